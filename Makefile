# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Bytecode is cached, as for an installed package (pip compiles at install): the tests
# start hundreds of Python processes, and without a cache each compiles the ~400 modules
# of Stepline it imports again (about 0.5 s of CPU an engine, 30 s a pytest worker's
# collection). A machine or container may set PYTHONDONTWRITEBYTECODE; the cache goes to
# one folder in the venv instead of __pycache__ folders across the tree.
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-fast lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the example app and drive one of each kind of function through it.
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## Lint, type-check and run every test: one pytest worker a core and one more (each test
## file runs whole in one worker), since the process tests spend much of their time waiting
## on the servers they start (tests/README.md has the measured runs). The files go out
## longest first (tests/_support/file_order.py: --no-loadscope-reorder keeps that order).
## mypy runs beside the tests (its output is printed once they end): either failing fails.
## PYTEST_ARGS: more options for pytest, e.g. make test PYTEST_ARGS="--durations=30"
WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: $(STAMP) lint
	@$(BIN)/mypy > .mypy.out 2>&1 & mypy=$$!; \
	$(BIN)/pytest -n $(WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS); tests=$$?; \
	wait $$mypy; typed=$$?; echo "mypy:"; cat .mypy.out; rm -f .mypy.out; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ]

## The fast tier: every test that needs no process, browser, database server or long run
## (tests/README.md); no lint or type check.
test-fast: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder --tier fast

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

.PHONY: test-versions
## The fast tier on Python 3.10, 3.12 and 3.13, each in a fresh venv of nox's, on pyenv's
## interpreters (noxfile.py).
test-versions: $(STAMP)
	$(BIN)/nox --no-reuse-existing-virtualenvs
