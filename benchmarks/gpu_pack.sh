#!/usr/bin/env bash
# Packs a gpu_runs.sh output folder for the trip back from a lent machine, which returns at most 8 files of at
# most 16 MiB each: the runs' results, traces, test ranks (enough for `nasrec compare`) and logs without weights
# in done.tgz; each unfinished run (no
# result.json) with its checkpoints in resume-N.tgz.partXX pieces of 15 MiB, so a later call can carry it back
# (cat the pieces | tar xz) and resume.
#   bash benchmarks/gpu_pack.sh OUT_DIR DEST
set -euo pipefail
src=$1 dest=$2
mkdir -p "$dest"
tar czf "$dest/done.tgz" --exclude='*.pt' "$src"
i=0
while IFS= read -r cfg; do
    run=$(dirname "$cfg")
    [ -f "$run/result.json" ] && continue
    i=$((i + 1))
    tar cz "$run" | split -b 15M - "$dest/resume-$i.tgz.part"
done < <(find "$src" -name config.json)
ls -la "$dest"
n=$(find "$dest" -type f | wc -l)
if [ "$n" -gt 8 ]; then echo "gpu_pack: $n files, more than the 8 a lent machine returns" >&2; fi
