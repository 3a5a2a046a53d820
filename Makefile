# Every target bootstraps .venv itself; re-running does not reinstall unless pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest sandbox bench reliability clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check commands bot sandbox tests bench

typecheck: $(STAMP)
	$(BIN)/mypy commands bot

# Workers, not cores: most tests wait on sockets and child processes (4 fit 2 cores in ~3.5 min).
# `make pytest PYTEST_WORKERS=0` runs everything in one process.
PYTEST_WORKERS ?= 4

pytest: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS)

test: lint typecheck pytest

sandbox: $(STAMP)
	$(BIN)/imagebot sandbox

bench: $(STAMP)
	$(BIN)/python -m bench

reliability: $(STAMP)
	$(BIN)/python -m bench.reliability

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
