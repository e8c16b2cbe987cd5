# Everything installs itself, idempotently: a virtual environment in ./.venv with the Python
# packages, and the pinned npm packages (Anvil, solcjs) in ./node_modules. The Python packages
# come from requirements.lock (every version pinned, every file's hash checked); `make lock`
# updates it (docs/operations.md, "Reproducible installs").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.stamp-installed
NODE_STAMP := node_modules/.stamp-installed
LOCK := requirements.lock
LOCK_VENV := .venv-lock
PIP_COMPILE = $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --extra dev --strip-extras \
	--no-emit-index-url --output-file $(LOCK) pyproject.toml

.PHONY: setup demo test lint typecheck unit contracts contracts-check clean bench browser lock lock-upgrade

setup: $(PY_STAMP) $(NODE_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(PY_STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# pip-tools in a virtual environment of its own, so that it never enters the locked one.
$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check pip-tools

# The lock again from pyproject.toml, keeping every pin it can (a new dependency is added).
lock: $(LOCK_VENV)/bin/pip-compile
	$(PIP_COMPILE)

# Every package at the newest version pyproject.toml allows; review the diff, run make test.
lock-upgrade: $(LOCK_VENV)/bin/pip-compile
	$(PIP_COMPILE) --upgrade

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/reconciler demo

bench: setup
	$(BIN)/python -m benchmarks.bench $(BENCH_ARGS)
	if [ -z "$(BENCH_ARGS)" ]; then $(BIN)/python -m benchmarks.audit_bench; fi
	if [ -z "$(BENCH_ARGS)" ]; then $(BIN)/python -m benchmarks.shards_bench; fi
	if [ -z "$(BENCH_ARGS)" ]; then $(BIN)/python -m benchmarks.watch_bench; fi

lint: setup
	$(BIN)/ruff check reconciler chains tests benchmarks
	$(BIN)/mypy

test: lint browser
	$(BIN)/python -m pytest -q -n 2

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
	rm -rf $(VENV) $(LOCK_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
