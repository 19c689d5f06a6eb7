# The README's quick start: `make demo` and `make test` create .venv on first use. Users who want the
# command outside the checkout install it with `pipx install .`.
# The suite runs on 4 workers (pytest-xdist): most of its time is spent waiting on PostgreSQL, the
# fake Metabase and subprocesses, so 4 workers pay off even on 2 cores.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install install-dev e2e-docker bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --quiet -e .
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# After a failure make adds its own "make: *** ... Error N" line and exits 2: scripts that read the
# tool's exit code (2 = changes pending, 64 = a wrong command line) run .venv/bin/provision directly.
demo: install
	@$(BIN)/provision demo

test: install-dev
	$(BIN)/ruff check provisioner tests
	$(BIN)/mypy --strict provisioner
	$(BIN)/python -m pytest -n 4

lint: install-dev
	$(BIN)/ruff check provisioner tests benchmarks scripts

# Real Metabase in Docker, every supported version; needs a Docker engine (see README).
e2e-docker: install-dev
	bash scripts/e2e-docker.sh

# Figures, not a gate: prints one table and writes it into the README's Performance section.
bench: install-dev
	$(BIN)/python benchmarks/demo_bench.py --readme

# provision seed --scale 1, 10, 100: wall time, rows/s, memory, COPY throughput, every demo card timed.
.PHONY: bench-seed
bench-seed: install-dev
	$(BIN)/python benchmarks/seed_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
