# The two commands a newcomer runs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install install-dev e2e-docker bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/provision demo

test: install-dev
	$(BIN)/ruff check provisioner tests
	$(BIN)/mypy --strict provisioner
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check provisioner tests benchmarks scripts

# Real Metabase in Docker, every supported version; needs a Docker engine (see README).
e2e-docker: install-dev
	bash scripts/e2e-docker.sh

# Figures, not a gate: prints one table and writes it into the README's Performance section.
bench: install-dev
	$(BIN)/python benchmarks/demo_bench.py --readme

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
