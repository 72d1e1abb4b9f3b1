# Every set-up step lives here: a fresh Debian machine needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck unit golden clean

run: $(VENV)/.installed-run
	$(BIN)/feedsvc serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test lint typecheck unit

lint: $(VENV)/.installed-test
	$(BIN)/ruff check feedsvc tests benchmarks wsgi.py
	$(BIN)/ruff format --check feedsvc tests benchmarks wsgi.py

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy --strict feedsvc

unit: $(VENV)/.installed-test
	$(BIN)/pytest

# Rewrite tests/golden/ from the current code; read the diff before committing it.
golden: $(VENV)/.installed-test
	$(BIN)/python -m tests.golden

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
