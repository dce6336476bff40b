# Two commands a new user needs: `make demo` and `make test`. `make check` runs what CI runs.
# torch==2.13.0 is installed first so that pip takes the CPU build instead of a multi-GB CUDA one.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SOURCES := bpl_envs agents tests examples benchmarks

.PHONY: install demo test test-ray lint format-check format typecheck check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bpl reproduce toy --quick --force
	$(VENV)/bin/bpl compare --quick --force
	@echo "Results: results/toy_quick/ and results/compare_quick/ (results.md, results.json, PNG figures)"

test: $(STAMP)
	$(PY) -m pytest -q -n auto -m "not slow and not ray"

# The Ray backend on a real local Ray instance: installs the ray extra, then the tests marked ray
# (`import ray` first, so that a failed install cannot turn into skipped tests). CI runs it as its
# own step after `make check`.
test-ray: $(STAMP)
	$(PY) -m pip install --quiet -e ".[ray]"
	$(PY) -c "import ray"
	$(PY) -m pytest -q -m ray

lint: $(STAMP)
	$(VENV)/bin/ruff check $(SOURCES)

format-check: $(STAMP)
	$(VENV)/bin/ruff format --check $(SOURCES)

format: $(STAMP)
	$(VENV)/bin/ruff format $(SOURCES)

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint format-check typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
