# preread — the two set-up commands of the README:
#   make run    create .venv, install, build demo models if the registry is empty, serve
#   make test   create .venv, install, lint (ruff, import contract, mypy: `make lint`), install the test
#               peers (dcmtk, Orthanc, Chromium, PostgreSQL), audit the
#               pinned dependencies (pip-audit; scripts/dep-audit.sh says the policy), run the default
#               test suite (all but the `slow` marker; `make test-slow` runs those)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow peers audit lint bench clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/preread serve

peers:
	bash scripts/install-peers.sh

test: $(STAMP) lint peers audit
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The habits that keep the house in order (pyproject.toml): ruff (lint + format check), the import
# contract of ../shared/DESIGN.md's layering (import-linter), mypy on the typed packages, and no noqa
# without its rule and a reason (scripts/check_noqa.py).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/check_noqa.py
	$(BIN)/lint-imports
	$(BIN)/mypy

# Known vulnerabilities in requirements.lock fail the build; an unreachable vulnerability database
# is reported loudly but does not (PREREAD_AUDIT_STRICT=1 makes it fail).
audit: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/dep-audit.sh

# The slow tests (kill -9 of the whole service, load smoke, multi-node placement, Ray Train resume):
# CI runs them after `make test` while its time allows (.ci/run).
test-slow: $(STAMP) peers
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/preread bench ecg --json bench/results/ecg.json
	$(BIN)/preread bench cxr --json bench/results/cxr.json

clean:
	rm -rf $(VENV) var .pytest_cache
