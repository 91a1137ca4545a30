# First two commands on a fresh machine: `make demo`, then `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= motoray.yaml
SAMPLE := data/sample/MotoGP

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(SAMPLE): | setup
	$(BIN)/motoray sample-data $(SAMPLE) --count 60 --size 1280x720

demo: setup $(SAMPLE)
	$(BIN)/motoray run examples/requests/seed_sample.json --config $(CONFIG)

lint: setup
	$(BIN)/ruff check motoray tests scripts
	$(BIN)/ruff format --check motoray tests scripts

test: setup lint
	$(BIN)/pytest -q -m "not slow" --durations=10

test-all: setup lint
	$(BIN)/pytest -q --durations=10

bench: setup
	$(BIN)/python -m motoray.bench --output bench/result.json

clean:
	rm -rf outputs data/sample
