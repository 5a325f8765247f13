#!/usr/bin/env bash
# Every strategy at two budgets on ML-1M, trials on a local Ray, every architecture in MLflow.
#   bash pipelines/ml1m_all_strategies.sh [OPTIONS]   # start; OPTIONS override the defaults below
#   RESUME=1 bash pipelines/ml1m_all_strategies.sh   # continue after an interruption
# SPACE (default sasrec-ml1m) and MAX_LEN (default 50) choose the space; the budgets are 1/3 and 2/3 of its max arch.
# A cheaper run for 2 CPU cores (what docs/benchmarks.md reports):
#   SPACE=sasrec-gowalla OUT=runs/ml1m-all-quick bash pipelines/ml1m_all_strategies.sh \
#       --search-epochs 1 --retrain-epochs 3 --no-all-windows
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/ml1m-all-strategies}
if [ -n "${RESUME:-}" ]; then
  exec .venv/bin/nasrec search --resume "$out"
fi
space=${SPACE:-sasrec-ml1m} max_len=${MAX_LEN:-50}
# The max arch of the space at max_len on ML-1M's 3,416 items: the budgets are fractions of it.
max=$(.venv/bin/nasrec cost --space "$space" --arch max --max-len "$max_len" --json | .venv/bin/python -c \
  'import json, sys; print(json.load(sys.stdin)["flops"])')
budgets=$(.venv/bin/python -c "print(f'{$max / 3:.0f},{2 * $max / 3:.0f}')")
.venv/bin/nasrec search --strategy all --budget-flops "$budgets" --trials 2 --space "$space" --max-len "$max_len" \
  --data ../shared/data/ml-1m/ml-1m_sasrec5.txt --search-epochs 5 --retrain-epochs 30 --patience 5 \
  --window-stride 25 --out "$out" "$@"
.venv/bin/nasrec pareto
