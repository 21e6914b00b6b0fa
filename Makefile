# initbench: `make repro` and `make test` each work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Stages run `python` and `dvc` from the project's venv.
export PATH := $(CURDIR)/$(BIN):$(PATH)
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: repro test lint format data plots bench bench-pipeline help

help:
	@echo "make repro   create .venv, install pinned deps, write the embedded dataset, dvc repro"
	@echo "make test    create .venv if needed, install pinned deps, run the test suite"
	@echo "make plots   a PNG of every plot of dvc plots show -> dvc_plots/png/"
	@echo "make lint    ruff check + format check"
	@echo "make bench   initbench against plain baselines, side by side -> reports/bench.md"
	@echo "make bench-pipeline BEFORE=<commit>   per-stage wall time of the pipeline, before vs HEAD"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing pinned dependencies into $(VENV)/ (a few minutes the first time) ..."
	$(PIP) install -e '.[dev]'
	@# Its metadata pulls in TensorFlow, which we do not use: install the data only.
	$(PIP) install --no-deps animal-mnist==0.4
	@touch $@

# Writes data/ from the embedded dataset, unless data/ already holds a dataset.
data: $(STAMP)
	$(BIN)/python -m initbench.data.embedded data

# Every stage validates params.yaml before its work (check_params first, when init
# or seed change); checking here as well stops a bad value before DVC starts.
repro: data
	@$(BIN)/python -m initbench.params params.yaml
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest

plots: $(STAMP)
	$(BIN)/python -m initbench.views.plots png dvc_plots/png

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

# About 20 minutes: each stage kind of the default pipeline, at BEFORE and at HEAD.
bench-pipeline: $(STAMP)
	@test -n "$(BEFORE)" || { echo "error: give the commit to compare with: make bench-pipeline BEFORE=<commit>" >&2; exit 1; }
	$(BIN)/python benchmarks/pipeline.py --before $(BEFORE)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
