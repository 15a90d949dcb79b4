# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: demo test lint typecheck test-deps clean bench-detection bench-attribution bench-loop \
        bench-ingest bench-store bench-scale

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
	@$(VENV)/bin/rearguard demo $(ARGS)

# Debian packages behind the integration tests: a real Prometheus on loopback, git, curl.
test-deps:
	@bash deploy/install-test-deps.sh

test: $(TSTAMP) test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo --no-cache
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -n 2

# Onset -> revert PR and first Slack message over 20 incidents on a real Prometheus (a few minutes).
bench-loop: $(TSTAMP) test-deps
	$(PY) -m bench.loop.run

# Webhooks and CD deploys offered at rising rates to `rearguard serve` (its own process) while
# 50 Watches run at a 1 s step on a real Prometheus; against the unbatched baseline in the same run.
# Prints a table and writes bench/results/ingest.json (about 10 minutes; BENCH_SCALE=0.1 for a check).
bench-ingest: $(TSTAMP) test-deps
	$(PY) -m bench.ingest.run

# Reports, ten example queries (`POST /v1/query`) and the Parquet export over a year of synthetic
# history for 50 services (built through the store's write path, cached under bench/.cache),
# served by `rearguard serve` while its writer keeps ingesting; the writer's p99 with and without
# readers. Prints a table and writes bench/results/store.json (BENCH_SCALE=0.1 for a check).
bench-store: $(TSTAMP) test-deps
	$(PY) -m bench.store.run

# N services deployed at once (N = 100, 300, 1000; 2 ratio SLIs each at a 15 s step, 10-minute
# watch) on one real Prometheus scraping every 5 s, `rearguard serve` its own process: its CPU,
# RSS, evaluation lag, steps evaluated and queries per evaluation. Prints a table and writes
# bench/results/scale.json (about 30 minutes; BENCH_SCALE_NS=20 BENCH_SCALE_BASELINE=120
# BENCH_SCALE_MEASURE=90 for a check).
bench-scale: $(TSTAMP) test-deps
	$(PY) -m bench.scale.run

lint: $(TSTAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo --no-cache

typecheck: $(TSTAMP)
	$(VENV)/bin/mypy

# Rearguard's detector against peer-style detectors and an oracle; prints a table and writes
# bench/results/detection.json. Real series from $$REARGUARD_SHARED_FIXTURES/nab (default ../shared/fixtures).
# Its second half serves deploys from a real Prometheus at 15/30/60 s scrapes (needs `prometheus`
# and `promtool`); ARGS="--quick" for a tenth, ARGS="--no-scraped" to skip it.
bench-detection: $(STAMP)
	$(PY) -m bench.detection.run $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Attribution benchmark: real git repositories from a seed, Rearguard's ranking against the
# baselines; prints a table and writes bench/results/attribution.json (a minute or two).
bench-attribution: $(STAMP)
	PYTHONPATH=. $(PY) -m bench.attribution.run $(ARGS)
