#!/usr/bin/env bash
# Accuracy of SASRec (d 64, 2 blocks, 1 head, max_len 200, batch 128, dropout 0.2, full-softmax CE)
# on ML-1M (5-core, SASRec numbering), leave-one-out, full ranking; early stopping on valid NDCG@10.
#   bash benchmarks/ml1m_sasrec.sh [OUT_DIR] [EXTRA nasrec train OPTIONS, e.g. --device cuda]
# NASREC (default .venv/bin/nasrec) and DATA_DIR (default ../shared/data) may be set; RESUME=1 continues.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/out/ml1m-sasrec-d64}
shift || true
${NASREC:-.venv/bin/nasrec} train --data "${DATA_DIR:-../shared/data}/ml-1m/ml-1m_sasrec5.txt" \
  --space benchmarks/spaces/sasrec-d64.yaml --arch max --epochs 200 --patience 10 --batch-size 128 --lr 1e-3 \
  --seed 0 --out "$out" ${RESUME:+--resume} "$@"
