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

# Starts the service on the sample data, sends the seed request over HTTP, waits with a
# progress bar, prints the summary and stops the service (also on failure or Ctrl-C).
demo: setup $(SAMPLE)
	@export MOTORAY_API_TOKEN=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(24))'); \
	$(BIN)/motoray serve --config $(CONFIG) & server=$$!; \
	trap 'kill -TERM $$server; wait $$server' EXIT; \
	$(BIN)/motoray submit examples/requests/seed_sample.json --url http://127.0.0.1:5000 --wait --ready-timeout 180

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
