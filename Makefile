# Two commands set up everything on a fresh machine (Python >= 3.11 with venv and pip):
#   make demo   install into .venv, then prepare → train → synth on the built-in dataset
#   make test   install into .venv, then lint (ruff) and run the whole test suite
# make test-fast runs the tests that answer in seconds (no real command line, no training runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint install clean

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

lint: install
	$(BIN)/ruff check wavegen tests
	$(BIN)/ruff format --check wavegen tests

clean:
	rm -rf $(VENV) demo runs prepared .pytest_cache
