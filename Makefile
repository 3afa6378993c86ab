# The README's two commands: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench heldout lint clean keda-stubs

# autoscaler/{policies,providers,simulations} link to the top-level folders; ruff does not
# follow links, so the folders are named once each.
LINTED := autoscaler policies providers simulations tests benchmarks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Compiled at install (setup.py): the simulator's C sources only; the decision path is plain
# Python, so an edited .py always runs as written.
BUILT_FROM := setup.py $(wildcard simulations/*.c simulations/*.h)

$(STAMP): pyproject.toml $(BUILT_FROM) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[sim,test,bench,kubernetes,keda,azure,aws,aws-test,gcp,ray,prometheus,sqs,rabbitmq,nats,jobqueues-test]'
	# arq (job-queue source tests) pins redis-py < 6: installed without it, on the project's.
	$(BIN)/python -m pip install --quiet --no-deps 'arq>=0.26,<0.29'
	touch $(STAMP)

## Run the whole loop for about a minute on the embedded default (memory queue, local fleet).
run: $(STAMP)
	$(BIN)/autoscaler demo

## Install the test dependencies and run the suite (starts its own redis-server on loopback).
test: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

## Print benchmark figures (never timed assertions).
bench: $(STAMP)
	$(BIN)/python -m benchmarks

## Check a policy on variants of the shared traces it was not tuned on (13 min on 2 cores; 1 min cached).
heldout: $(STAMP)
	$(BIN)/python -m benchmarks.heldout $(if $(POLICY),--policy '$(POLICY)')

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy
	$(BIN)/lint-imports

## Regenerate the committed KEDA external-scaler messages from their .proto (grpcio-tools).
KEDA_DIR := autoscaler/runtime/keda
keda-stubs: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I$(KEDA_DIR) --python_out=$(KEDA_DIR) \
		--pyi_out=$(KEDA_DIR) $(KEDA_DIR)/externalscaler.proto

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
