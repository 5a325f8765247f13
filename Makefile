# Two entry points, each doing its own set-up on a fresh clone:
#   make demo   - run the main job on the embedded synthetic data
#   make test   - run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean constraints lowest

# constraints.txt: the versions the suite last passed with, so an upstream release cannot break a fresh
# clone (Optuna 5.1 once did); `make constraints` re-resolves the newest versions, tests them and rewrites it.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch first, so nothing later pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/nasrec search --strategy easrec --space tiny --budget-flops 4e5 \
		--trials 4 --search-epochs 3 --retrain-epochs 10 --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check nasrec tests benchmarks

constraints:
	rm -rf .venv-latest
	$(PY) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip
	.venv-latest/bin/python -m pip install -q torch==2.13.0
	.venv-latest/bin/python -m pip install -q --upgrade -e '.[dev]'
	MLFLOW_DISABLE_TELEMETRY=true .venv-latest/bin/python -m pytest -q
	{ sed -n '1,3p' constraints.txt; .venv-latest/bin/pip freeze --exclude-editable | grep -iv '^torch=='; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf .venv-latest

# The lower bounds in pyproject.toml, tested: every direct dependency at its bound (torch stays 2.13.0).
LOWEST = $(PY) -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; \
	print(" ".join(d.replace(">=", "==") for d in deps if not d.startswith("torch")))'
lowest:
	rm -rf .venv-lowest
	$(PY) -m venv .venv-lowest
	.venv-lowest/bin/python -m pip install -q --upgrade pip
	.venv-lowest/bin/python -m pip install -q torch==2.13.0
	.venv-lowest/bin/python -m pip install -q -e '.[dev]' $$($(LOWEST))
	MLFLOW_DISABLE_TELEMETRY=true .venv-lowest/bin/python -m pytest -q
	rm -rf .venv-lowest

clean:
	rm -rf $(VENV) runs
