#!/usr/bin/env bash
# Every strategy at two budgets on ML-1M, trials on a local Ray, every architecture in MLflow.
#   bash pipelines/ml1m_all_strategies.sh [OPTIONS]   # start; OPTIONS override the defaults below
#   RESUME=1 bash pipelines/ml1m_all_strategies.sh   # continue after an interruption
# e.g. a cheaper run on 2 CPU cores (what docs/benchmarks.md reports):
#   OUT=runs/ml1m-all-quick bash pipelines/ml1m_all_strategies.sh --search-epochs 2 --retrain-epochs 5 --no-all-windows
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/ml1m-all-strategies}
if [ -n "${RESUME:-}" ]; then
  exec .venv/bin/nasrec search --resume "$out"
fi
# The max arch of sasrec-ml1m at max_len 50 on ML-1M's 3,416 items: the budgets are fractions of it.
max=$(.venv/bin/nasrec cost --space sasrec-ml1m --arch max --max-len 50 --json | .venv/bin/python -c \
  'import json, sys; print(json.load(sys.stdin)["flops"])')
budgets=$(.venv/bin/python -c "print(f'{$max / 3:.0f},{2 * $max / 3:.0f}')")
.venv/bin/nasrec search --strategy all --budget-flops "$budgets" --trials 2 --space sasrec-ml1m --max-len 50 \
  --data ../shared/data/ml-1m/ml-1m_sasrec5.txt --search-epochs 5 --retrain-epochs 30 --patience 5 \
  --window-stride 25 --out "$out" "$@"
.venv/bin/nasrec pareto
