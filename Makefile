# Everything installs into .venv; torch's CPU build goes in first so nothing pulls a CUDA build.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0

.PHONY: install demo test test-all bench lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## train, evaluate, export and report on the bundled digits
	$(VENV)/bin/deepline demo

test: $(STAMP)  ## the default suite (no slow tests)
	$(VENV)/bin/pytest

test-all: $(STAMP)  ## including the slow tests
	$(VENV)/bin/pytest -m ''

bench: $(STAMP)  ## the benchmarks; results go to benchmarks/RESULTS.md by hand
	$(PY) benchmarks/mnist.py
	$(PY) benchmarks/formats.py
	$(PY) benchmarks/serving.py

lint: $(STAMP)
	$(VENV)/bin/ruff check deepline tests benchmarks
	$(VENV)/bin/ruff format --check deepline tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
