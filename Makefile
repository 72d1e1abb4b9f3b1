# Every set-up step lives here: a fresh Debian machine needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck unit clean system-packages bench screenshots

run: $(VENV)/.installed-run
	$(BIN)/feedsvc serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test lint typecheck unit

lint: $(VENV)/.installed-test
	$(BIN)/ruff check feedsvc tests benchmarks wsgi.py gunicorn.conf.py
	$(BIN)/ruff format --check feedsvc tests benchmarks wsgi.py gunicorn.conf.py

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy --strict feedsvc

unit: $(VENV)/.installed-test system-packages
	$(BIN)/pytest

# Debian packages the tests need: nginx, which tests/test_deploy.py starts itself (the
# package's own service is kept from starting with a policy-rc.d while installing), and
# chromium, which tests/test_browser.py drives through Playwright.
system-packages:
	@{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } && [ -x /usr/bin/chromium ] || { \
	  echo "installing Debian's nginx and chromium for the tests" >&2; \
	  made_policy=; [ -e /usr/sbin/policy-rc.d ] || { \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx chromium; status=$$?; \
	  [ -z "$$made_policy" ] || rm -f /usr/sbin/policy-rc.d; exit $$status; }

# The screenshots README.md shows, taken in Chromium from the bundled sample site.
screenshots: $(VENV)/.installed-test system-packages
	$(BIN)/python -m tests.test_browser docs/screenshots

# The benchmark suite (about 12 minutes with 100,000 items), then `feedsvc build` against
# Hugo on the same corpora (3 rounds at 1,000 and 10,000 items, one at 100,000: about 20
# minutes), both into docs/benchmarks.md; a failure in one still runs the other.
# It installs Debian's wrk and hugo when missing.
bench: $(VENV)/.installed-test
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
	@command -v hugo >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq hugo; }
	status=0; \
	$(BIN)/python -m benchmarks.run --out docs/benchmarks.md || status=$$?; \
	$(BIN)/python -m benchmarks.static_build --sizes 1000 10000 100000 --rounds 3 \
	  --large-rounds 1 --out docs/benchmarks.md || status=$$?; \
	exit $$status

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed; installing Debian's python3-venv" >&2; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: $(VENV)/bin/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/bin/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
