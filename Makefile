# The two set-up commands in the README are `make run` and `make test`; the rest are conveniences.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A persistent local Dagster instance, so CLI runs show up in `make ui` and reuse stored outputs.
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: install run ui test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/dagster asset materialize -m ml_platform --select '*'

ui: install
	$(BIN)/dagster dev -w workspace.yaml

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/pipeline_benchmark.py
