# GEL Broker — developer entry points. `make demo` and `make test` work on a fresh machine:
# they create .venv, install the project and the command-line tools the tests call.

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTHON_BIN ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then command -v $$p; break; fi; done)
PYTEST_ARGS ?=

.PHONY: help venv tools demo test test-fast lint bench chaos clean

help:
	@echo "make demo   - la ventanilla de vivienda de punta a punta (transporte embebido o RabbitMQ)"
	@echo "make test   - toda la suite (usa RabbitMQ y PostgreSQL si responden)"
	@echo "make lint   - ruff, mypy y gel schemas lint"
	@echo "make bench  - benchmarks (no forman parte de make test)"
	@echo "make chaos  - la prueba de caos larga: mata procesos y reinicia RabbitMQ y PostgreSQL (CHAOS_ARGS=--help)"

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON_BIN)" ]; then echo "Se necesita Python 3.11 o superior." >&2; exit 1; fi
	@test -x $(BIN)/python || $(PYTHON_BIN) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

tools:
	@bash deploy/dev/install-tools.sh

demo: $(STAMP)
	$(BIN)/gel demo

test: $(STAMP) tools
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/pytest -m "not rabbitmq and not postgres" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/gel schemas lint

bench: $(STAMP) tools
	$(BIN)/python -m bench $(BENCH_ARGS)

chaos: $(STAMP) tools
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
