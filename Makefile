# The two set-up commands in the README are `make run` and `make test`; the rest are conveniences.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A persistent local Dagster instance, so CLI runs show up in `make ui` and reuse stored outputs.
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: install run ui check test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Every declared model (ml_platform/defs/*/defs.yaml), then where its production model is and what to
# try next. One model: `make run SELECT=group:churn`.
SELECT ?= *
run: install
	$(BIN)/dagster asset materialize -m ml_platform --select '$(SELECT)'
	$(BIN)/ml-platform status

ui: install
	$(BIN)/dagster dev -w workspace.yaml

check: install
	$(BIN)/dg check defs

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/pipeline_benchmark.py
