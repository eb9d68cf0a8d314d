# Every target sets itself up: a project-local virtual environment with the pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

CDK := node_modules/.bin/cdk
CDK_STAMP := node_modules/.installed

.PHONY: setup demo test test-slow bench lint serve synth deploy diff clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mlops demo

# The suite without the end-to-end runs marked slow (CLI subprocesses, `mlops local serve`, the demo); CI runs both.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Figures, not assertions: prints a table, writes bench/results.json and the table in docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python bench/run.py

lint: $(STAMP)
	$(BIN)/ruff check .

serve: $(STAMP)
	$(BIN)/mlops local serve

$(CDK_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(CDK_STAMP)

# Offline, no Docker: layers are built with pip's platform options and cached under .build/.
synth: $(STAMP) $(CDK_STAMP)
	$(CDK) synth --quiet --no-notices

diff: $(STAMP) $(CDK_STAMP)
	$(CDK) diff --no-notices

deploy: $(STAMP) $(CDK_STAMP)
	$(CDK) deploy --no-notices --require-approval broadening

clean:
	rm -rf $(VENV) cdk.out .pytest_cache .ruff_cache node_modules .build
