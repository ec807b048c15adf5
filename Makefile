# `make demo` and `make test` bootstrap .venv on a fresh machine, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mlmm demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/bench_mechanical.py
	$(PY) benchmarks/bench_potentials.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_embeddings.py

clean:
	rm -rf $(VENV) .pytest_cache
