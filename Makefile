# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: demo test lint typecheck prometheus clean bench-loop

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(TSTAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $@ $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rearguard demo $(ARGS)

# The Debian `prometheus` package backs the integration tests (a real server on loopback).
prometheus:
	@bash deploy/install-prometheus.sh

test: $(TSTAMP) prometheus
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# Onset -> revert PR and first Slack message over 20 incidents on a real Prometheus (a few minutes).
bench-loop: $(TSTAMP) prometheus
	$(PY) -m bench.loop.run

lint: $(TSTAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(TSTAMP)
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
