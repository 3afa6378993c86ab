# The README's two commands: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Compiled at install (setup.py): the simulator's C sources and the decision path, which mypyc
# compiles from its .py files. A compiled module shadows its .py, so editing one reinstalls.
BUILT_FROM := setup.py $(wildcard simulations/*.c simulations/*.h autoscaler/core/*.py policies/sla*.py)

$(STAMP): pyproject.toml $(BUILT_FROM) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

## Run the whole loop for about a minute on the embedded default (memory queue, local fleet).
run: $(STAMP)
	$(BIN)/autoscaler demo

## Install the test dependencies and run the suite (starts its own redis-server on loopback).
test: $(STAMP)
	$(BIN)/ruff check autoscaler policies providers simulations tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

## Print benchmark figures (never timed assertions).
bench: $(STAMP)
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check autoscaler policies providers simulations tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
