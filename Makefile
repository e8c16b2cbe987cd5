# Everything installs itself, idempotently: a virtual environment in ./.venv with the Python
# packages, and the pinned npm packages (Anvil, solcjs) in ./node_modules.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.stamp-installed
NODE_STAMP := node_modules/.stamp-installed

.PHONY: setup demo test lint typecheck unit contracts contracts-check clean bench browser

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
	$(BIN)/python -m benchmarks.audit_bench

lint: setup
	$(BIN)/ruff check reconciler chains tests benchmarks
	$(BIN)/mypy

test: lint browser
	$(BIN)/python -m pytest -q

# Headless Chromium (Debian's package) for the browser test of `report html`. Nothing to do
# when it is on PATH; as root with apt-get, installed (the package lists refreshed only if the
# first try fails); otherwise a one-line notice, and that test fails saying how to install it.
BROWSER_NOTE := the browser test of reconciler report html will fail until chromium is installed
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium with apt-get (headless browser tests)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; }; } || \
	  echo "note: apt-get could not install chromium; $(BROWSER_NOTE)"; \
	else echo "note: chromium is not installed (installing it needs root and apt-get); $(BROWSER_NOTE)"; fi

contracts: $(NODE_STAMP)
	node contracts/compile.mjs

contracts-check: $(NODE_STAMP)
	node contracts/compile.mjs --check

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
