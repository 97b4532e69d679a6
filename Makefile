# commune-monitor: one-command setup, demo and tests on a bare Debian 12 (as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help setup deps demo test test-deb test-deb-arm64 test-fast lint clean bench deb deb-arm64

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	bash scripts/bootstrap.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[collector,test]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project (agent + collector) with its test tools

deps:  ## install the Debian packages the tests use (snmpd, NUT, Prometheus, PostgreSQL, Chromium, ...)
	bash scripts/install-test-deps.sh

demo: setup  ## run the main job on the embedded default (SQLite) and print its URLs
	bash scripts/demo.sh

test: setup deps  ## install everything, lint, check the import contracts, run the whole test suite (the .deb tests: make test-deb)
	$(VENV)/bin/ruff check agent collector common testsupport tests benchmarks
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -p no:cacheprovider -m "not deb" $(PYTEST_ARGS)

test-deb: setup deps  ## build the .deb for Debian 12 and 13, install-test it in bare roots, upgrade it from an apt repository (~8 min once the roots are cached, root)
	$(PY) -m pytest -q -p no:cacheprovider -m "deb and not arm64" $(PYTEST_ARGS)

test-deb-arm64: setup  ## build the arm64 .deb for Debian 12 and 13 under qemu-user and smoke-test each in an arm64 root (~7 min; +14 min the first time, root)
	EXTRA_PACKAGES=qemu-user-static bash scripts/install-test-deps.sh
	$(PY) -m pytest -q -p no:cacheprovider -m arm64 $(PYTEST_ARGS)

test-fast: setup  ## unit tests only (no real peers)
	$(PY) -m pytest -q -m "not slow and not deb" $(PYTEST_ARGS)

lint: setup  ## ruff and the import contracts (pyproject.toml [tool.importlinter])
	$(VENV)/bin/ruff check agent collector common testsupport tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

bench: setup deps  ## run every benchmark against its peer (figures go to docs/benchmarks.md)
	$(PY) benchmarks/icmp_sweep.py --repeat 5 --markdown
	$(PY) benchmarks/snmp_walk.py --repeat 5 --markdown
	$(PY) benchmarks/ingest.py --sites 10000 --seconds 60
	$(PY) benchmarks/judge.py --sites 10000
	$(PY) benchmarks/status_page.py --repeat 20
	$(PY) benchmarks/simulate.py --sites 10000 --seconds 90
	$(PY) benchmarks/rollout.py --sites 3321
	$(PY) benchmarks/linkemu_lateness.py --repeat 3

deb: setup  ## build the agent's .deb for Debian 12 and 13 (amd64) into dist/deb (root; fetches wheels once)
	bash scripts/build-deb.sh bookworm
	bash scripts/build-deb.sh trixie

deb-arm64: setup  ## build the agent's .deb for Debian 12 and 13 arm64 into dist/deb, under qemu-user (root; needs qemu-user-static)
	ARCH=arm64 bash scripts/build-deb.sh bookworm
	ARCH=arm64 bash scripts/build-deb.sh trixie

clean:
	rm -rf $(VENV) .state .pytest_cache dist
