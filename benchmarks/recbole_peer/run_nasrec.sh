#!/usr/bin/env bash
# The nasrec side of the RecBole peer benchmark: SASRec d 64 / inner 64 / 2 blocks / 1 head / max_len 50 /
# dropout 0.2 / full-softmax CE / Adam 1e-3 / batch 128 / patience 10 on valid NDCG@10, on ML-100k,
# leave-one-out, full ranking, one torch thread.
#   bash benchmarks/recbole_peer/run_nasrec.sh [OUT_DIR]          (from anywhere; runs in the repo root)
#   DATA=../shared/data/ml-1m/ml-1m_sasrec5.txt EXTRA_ARGS="--window-stride 5" \
#       bash benchmarks/recbole_peer/run_nasrec.sh benchmarks/out/recbole_peer_ml1m/nasrec-stride5   (ML-1M)
#   EXCLUDE_HISTORY=1 bash benchmarks/recbole_peer/run_nasrec.sh benchmarks/out/recbole_peer/nasrec-exclude-history
# History items stay in the ranking by default, as in RecBole's full ranking of sequential models (its
# FullSortEvalDataLoader passes no history mask for them); EXCLUDE_HISTORY=1 drops them (not like-for-like).
# EXTRA_ARGS="--patience 50" appends options (a repeated option's last value wins), for diagnostic runs.
# Besides nasrec's OUT/result.json, writes OUT/epochs.tsv: per epoch, the CPU seconds of the nasrec process
# and the 1-minute load average, sampled when the epoch's log line appears (~0.2 s resolution).
# With --resume in EXTRA_ARGS (continue OUT's run) the earlier rows are kept and the new ones continue them: epoch
# numbers go on, and CPU and wall seconds add the earlier last row's (so they count both processes' work, the
# resumed process's start-up included, and not the time between them); command.txt gets the new command appended.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-benchmarks/out/recbole_peer/nasrec}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1 COLUMNS=200
hist=--no-exclude-history
[[ ${EXCLUDE_HISTORY:-0} == 1 ]] && hist=--exclude-history
mkdir -p "$out"
log="$out/train.log"
tsv="$out/epochs.tsv"
cmd=(.venv/bin/nasrec train --data "${DATA:-../shared/data/ml-100k/ml-100k.inter}" --space benchmarks/spaces/sasrec-ml100k.yaml
     --arch max --epochs 200 --patience 10 --batch-size 128 --lr 1e-3 --seed 0 --min-seq-len 3 "$hist"
     --threads 1 --out "$out" ${EXTRA_ARGS:-})
base=0 cpu_base=0 wall_base=0
if [[ " ${EXTRA_ARGS:-} " == *" --resume "* && -s "$tsv" ]] && (( $(wc -l <"$tsv") > 1 )); then
    read -r base cpu_base wall_base _ < <(tail -n 1 "$tsv")
    echo "${cmd[*]}" | tee -a "$out/command.txt"
else
    echo "${cmd[*]}" | tee "$out/command.txt"
    printf 'epoch\tcpu_seconds_since_process_start\twall_seconds_since_process_start\tloadavg_1min\n' >"$tsv"
fi
tick=$(getconf CLK_TCK)
start=$(date +%s.%N)
"${cmd[@]}" >"$log" 2>&1 &
pid=$!
seen=0
cpu=0
record() {  # append the epoch lines that appeared since the last call
    local n now
    n=$(grep -c '^epoch [0-9]*:' "$log" 2>/dev/null || true)
    while (( n > seen )); do
        seen=$((seen + 1))
        now=$(date +%s.%N)
        printf '%d\t%.2f\t%.2f\t%s\n' "$((base + seen))" "$(echo "$cpu_base + $cpu / $tick" | bc -l)" \
            "$(echo "$wall_base + $now - $start" | bc -l)" "$(cut -d' ' -f1 /proc/loadavg)" >>"$tsv"
    done
}
while kill -0 "$pid" 2>/dev/null; do
    if stat=$(cat "/proc/$pid/stat" 2>/dev/null); then
        fields=(${stat##*) })  # after "(comm) ": fields[11], fields[12] = utime, stime (clock ticks)
        cpu=$(( fields[11] + fields[12] ))
    fi
    record
    sleep 0.2
done
rc=0
wait "$pid" || rc=$?
record  # epochs logged in the last 0.2 s (CPU: the last reading)
end=$(date +%s.%N)
printf '{"command_wall_seconds": %.2f, "process_cpu_seconds": %.2f, "exit_code": %d}\n' \
    "$(echo "$end - $start" | bc -l)" "$(echo "$cpu / $tick" | bc -l)" "$rc" >"$out/process.json"
tail -n 25 "$log"
exit "$rc"
