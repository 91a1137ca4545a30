# First two commands on a fresh machine: `make demo`, then `make test`.
# Python: the first of python3, python3.13, python3.12, python3.11, python3.14 on the PATH that is
# 3.11 to 3.14 (Ray 2.60 ships wheels for those), or `make PYTHON=/path/to/python ...`.
SUPPORTED := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 14))
PYTHON ?= $(firstword $(foreach p,python3 python3.13 python3.12 python3.11 python3.14,\
	$(shell $(p) -c '$(SUPPORTED)' >/dev/null 2>&1 && echo $(p))))
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= motoray.yaml
SAMPLE := data/sample/MotoGP

.PHONY: setup demo test test-fast test-unit lint docs bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "motoray needs Python 3.11 to 3.14: none of python3, python3.11 ... python3.14 on the PATH is one. Install one, or run make PYTHON=/path/to/python3.12 $(MAKECMDGOALS)" >&2; exit 1; }
	@echo "using $(PYTHON) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)
	@# uv (from PyPI) installs what pip would, from the same index: 15 s here with an empty
	@# cache; pip took 34 s with a warm one. Byte-compiled: nothing writes .pyc files later
	@# (none after a whole suite), and without them pytest took 369 and 459 s, not 278 to 335.
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[test,docs]'
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
	$(BIN)/ruff check motoray tests scripts benchmarks docgen
	$(BIN)/ruff format --check motoray tests scripts benchmarks docgen

# The docs site (mkdocs.yml): reference tables generated from the code, into site/.
docs: setup  # (NO_MKDOCS_2_WARNING: mkdocs-material's banner about its successor)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Everything, what CI runs (its wall time is printed at the end): lint, the docs, then every
# test on two pytest workers (most of a run is waiting on clusters and services;
# tests/conftest.py groups what shares one).
test: setup lint docs
	@start=$$(date +%s); $(BIN)/pytest -q -n 2 --dist loadgroup --no-loadscope-reorder \
		--durations=15; status=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s of pytest"; exit $$status

# The inner loop: no cluster, service, benchmark, notebook or schemathesis. Two workers:
# these tests are CPU-bound.
test-fast: setup
	@start=$$(date +%s); $(BIN)/pytest -q -m "not slow" -x -n 2 --durations=5; status=$$?; \
	echo "make test-fast: $$(( $$(date +%s) - start )) s of pytest"; exit $$status

# The pure units (tests/conftest.py marks every test by what it needs): one process, as
# two workers would each pay the collection.
test-unit: setup
	$(BIN)/pytest -q -m unit -x

# The harness is not installed: benchmarks/ runs from the repository (python -m benchmarks).
bench: setup
	$(BIN)/python -m benchmarks --output benchmarks/result.json

clean:
	rm -rf outputs data/sample site
