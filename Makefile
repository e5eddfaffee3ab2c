# Boxoffice: `make run` serves the demo; `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# `make run PORT=8000` (or HOST=0.0.0.0) serves elsewhere.
HOST ?= 127.0.0.1
PORT ?= 5000
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run reset-demo test deps runtime-deps services frontend clean browser

# Two stamps each: what serving needs (requirements.txt, npm dependencies) and what the
# tests and benchmarks add (requirements-dev.txt, npm devDependencies).
$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements.txt requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

# npm ci starts from an empty node_modules: the full install leaves both stamps.
node_modules/.runtime: package.json package-lock.json
	npm ci --omit=dev --no-audit --no-fund --loglevel=error
	touch $@

node_modules/.dev: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.runtime $@

runtime-deps: $(VENV)/.runtime node_modules/.runtime

deps: $(VENV)/.dev node_modules/.dev

frontend: node_modules/.dev

run: runtime-deps
	$(VENV)/bin/flask --app wsgi db upgrade
	$(VENV)/bin/flask --app wsgi booking seed-demo
	$(PY) wsgi.py --host $(HOST) --port $(PORT) --access-log

# The demo's database from scratch (the embedded mode's SQLite file); nothing reinstalled.
reset-demo: runtime-deps
	rm -f instance/booking.db
	$(VENV)/bin/flask --app wsgi db upgrade
	$(VENV)/bin/flask --app wsgi booking seed-demo

services:
	bash deploy/local/services.sh

# The browser tests drive Debian's Chromium; Playwright's own browser download does not work here.
browser:
	@test -x /usr/bin/chromium || { SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# The suite runs in TEST_WORKERS pytest-xdist processes, one test file each at a time;
# each has its own MariaDB database and Redis namespace (tests/conftest.py). Most tests
# wait on the processes they start, so there are more of them than cores (the README's
# "Tests" has the figures). TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 3

# pytest's exit 5 (no tests collected) fails like any other non-zero exit, with a word why.
test: deps services browser
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; fi; \
	  exit $$status

clean:
	rm -rf $(VENV) node_modules instance/booking.db .pytest_cache
