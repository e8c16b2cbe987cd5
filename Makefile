# Everything installs itself, idempotently: a virtual environment in ./.venv with the Python
# packages, and the pinned npm packages (Anvil, solcjs) in ./node_modules.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.stamp-installed
NODE_STAMP := node_modules/.stamp-installed

.PHONY: setup demo test lint typecheck unit contracts contracts-check clean bench

setup: $(PY_STAMP) $(NODE_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(PY_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/reconciler demo

bench: setup
	$(BIN)/python -m benchmarks.bench

lint: setup
	$(BIN)/ruff check reconciler chains tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

contracts: $(NODE_STAMP)
	node contracts/compile.mjs

contracts-check: $(NODE_STAMP)
	node contracts/compile.mjs --check

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
