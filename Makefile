# newsgen — every entry point. `make run` and `make test` work on a fresh machine (Python 3.11+, offline
# except for the package registry).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?=
PORT ?= 3000
S3_PORT ?= 5001
PYTEST_ARGS ?=

.PHONY: help venv run test clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=python3.x (3.11 or newer)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned to the CPU build (2.13.0); an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create the virtualenv with training, serving and test dependencies

run: $(STAMP)  ## local S3 + demo models + local API on 127.0.0.1:$(PORT) (DATA=some.csv to train on it)
	$(PY) -m infra.local.run --port $(PORT) --s3-port $(S3_PORT) $(if $(DATA),--data $(DATA))

test: $(STAMP)  ## the test suite (pytest)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:  ## remove the demo models and caches (keeps the venv)
	rm -rf .newsgen .pytest_cache
