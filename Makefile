# commune-monitor: one-command setup, demo and tests on a bare Debian 12 (as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help setup deps demo test test-fast lint clean bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	bash scripts/bootstrap.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with its test tools

deps:  ## install the Debian packages the tests use (snmpd, NUT, Prometheus, PostgreSQL, Chromium, ...)
	bash scripts/install-test-deps.sh

demo: setup  ## run the main job on the embedded default (SQLite) and print its URLs
	bash scripts/demo.sh

test: setup deps  ## install everything, lint, and run the whole test suite
	$(VENV)/bin/ruff check agent collector common tests benchmarks
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: setup  ## unit tests only (no real peers)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: setup  ## ruff
	$(VENV)/bin/ruff check agent collector common tests benchmarks

bench: setup deps  ## run every benchmark against its peer (figures go to docs/benchmarks.md)
	$(PY) benchmarks/icmp_sweep.py --repeat 5 --markdown
	$(PY) benchmarks/snmp_walk.py --repeat 5 --markdown
	$(PY) benchmarks/ingest.py --sites 10000 --seconds 60
	$(PY) benchmarks/judge.py --sites 10000
	$(PY) benchmarks/status_page.py --repeat 20
	$(PY) benchmarks/simulate.py --sites 10000 --seconds 90

clean:
	rm -rf $(VENV) .state .pytest_cache
