# Two entry points, each doing its own set-up on a fresh clone:
#   make demo   - run the main job on the embedded synthetic data
#   make test   - run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch first, so nothing later pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/nasrec search --strategy easrec --space tiny --budget-flops 4e5 \
		--trials 4 --search-epochs 3 --retrain-epochs 10 --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check nasrec tests benchmarks

clean:
	rm -rf $(VENV) runs
