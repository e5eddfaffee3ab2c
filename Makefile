# Boxoffice: `make run` serves the demo; `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test deps services frontend clean browser

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements-dev.txt
	touch $@

deps: $(VENV)/.installed frontend

frontend: node_modules/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: deps
	$(VENV)/bin/flask --app wsgi db upgrade
	$(VENV)/bin/flask --app wsgi booking seed-demo
	$(PY) wsgi.py --host 127.0.0.1 --port 5000

services:
	bash deploy/local/services.sh

# The browser tests drive Debian's Chromium; Playwright's own browser download does not work here.
browser:
	@test -x /usr/bin/chromium || { SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

test: deps services browser
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) node_modules instance/booking.db .pytest_cache
