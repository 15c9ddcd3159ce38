# On a fresh machine (Python >= 3.11 with venv and pip):
#   make demo   the set-up: install into .venv, then prepare → train → synth on the built-in dataset
#   make test   for developers: install into .venv, then lint (ruff), check types (mypy) and run the whole test suite
# make test-fast runs the tests that answer in seconds (no real command line, no training runs).
# make native-check, after changing the native engine's C++: builds it with ASan + UBSan and holds
# it to the Python references (a minute for the first build, then seconds).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast native-check lint install clean

install: $(VENV)/.installed

# constraints.txt pins the torch/torchaudio pair known to work together; pyproject.toml keeps
# the ranges a library should declare.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: install
	$(BIN)/wavegen demo

test: install lint
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not sweep"

native-check: install
	$(BIN)/python -m wavegen.generate.native.check --sanitize

lint: install
	$(BIN)/ruff check wavegen tests
	$(BIN)/ruff format --check wavegen tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) demo runs prepared .pytest_cache .mypy_cache
