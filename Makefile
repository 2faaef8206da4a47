# Amoeba: `make run` sets everything up and serves; `make test` runs the test suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench-stage1

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/amoeba fetch-model smollm2-135m
	$(BIN)/amoeba serve

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" --timeout=600

lint: $(STAMP)
	$(BIN)/ruff check cli core profilers server migrations tests bench
	$(BIN)/mypy cli core profilers server
