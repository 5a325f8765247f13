#!/usr/bin/env bash
# EASRec on Amazon Beauty (short sequences, 12k items) with the sasrec-gowalla space, 2 trials.
#   bash pipelines/beauty_easrec.sh ; RESUME=1 bash pipelines/beauty_easrec.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/beauty-easrec}
if [ -n "${RESUME:-}" ]; then
  exec .venv/bin/nasrec search --resume "$out"
fi
max=$(.venv/bin/nasrec cost --space sasrec-gowalla --arch max --max-len 50 --n-items 12101 --json \
  | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["flops"])')
budget=$(.venv/bin/python -c "print(f'{$max / 3:.0f}')")
.venv/bin/nasrec search --strategy easrec --budget-flops "$budget" --trials 2 --space sasrec-gowalla --max-len 50 \
  --data ../shared/data/amazon-beauty/Beauty.txt --search-epochs 10 --retrain-epochs 50 --out "$out"
.venv/bin/nasrec pareto
