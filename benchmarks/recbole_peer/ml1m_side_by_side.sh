#!/usr/bin/env bash
# The ML-1M peer comparison in one command: RecBole 1.2.1's SASRec (max_len 50, capped at 2 hours) on one
# core and nasrec's leading setting on the other, seed after seed, at the same time; then the paired test
# over the 6,040 test users against RecBole's per-user ranks, and compare.py's table per seed.
#   bash benchmarks/recbole_peer/ml1m_side_by_side.sh [OUT] [SEED ...]      (defaults: benchmarks/out/recbole_peer_ml1m, 0 1 2)
# Needs the RecBole venv (benchmarks/recbole_peer/setup_venv.sh) and nasrec's .venv (make venv). About 2.3 hours.
# nasrec runs: overlapping windows (stride 5), lr 3e-3, RecBole's initialisation and input LayerNorm
# (benchmarks/spaces/sasrec-ml100k-bert-init.yaml), --max-minutes 46 each (a third of RecBole's capped run);
# three seeds fit beside RecBole's 2 hours. Leave the machine otherwise idle: the times are the result.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-benchmarks/out/recbole_peer_ml1m}
(( $# )) && shift
seeds=("$@")
(( ${#seeds[@]} )) || seeds=(0 1 2)
data=../shared/data/ml-1m/ml-1m_sasrec5.txt
mkdir -p "$out"

../recbole-venv/bin/python benchmarks/recbole_peer/run_recbole.py --data "$data" --out "$out" --max-hours 2 \
    >"$out/recbole.log" 2>&1 &
recbole=$!
runs=()
for s in "${seeds[@]}"; do
    run="$out/nasrec-bert-init-seed$s"
    DATA=$data EXTRA_ARGS="--window-stride 5 --lr 3e-3 --max-minutes 46 --seed $s \
--space benchmarks/spaces/sasrec-ml100k-bert-init.yaml" bash benchmarks/recbole_peer/run_nasrec.sh "$run"
    runs+=("$run")
done
wait "$recbole"

.venv/bin/python benchmarks/recbole_peer/paired.py --recbole "$out/recbole_test_ranks.json" "${runs[@]}" \
    --json "$out/paired.json"
for run in "${runs[@]}"; do
    .venv/bin/python benchmarks/recbole_peer/compare.py --together --recbole "$out/recbole.json" \
        --nasrec "$run/result.json" --sequences "$out/recbole_sequences.json" --data "$data" \
        --out "$run/compare.md"
done
