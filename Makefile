# `make demo` and `make test` bootstrap .venv on a fresh machine, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

PLUGINS := plugins/openmmml-mlmm plugins/mlmm-torchani plugins/mlmm-mace

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet $(addprefix -e ,$(PLUGINS))
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
	$(PY) benchmarks/bench_scaling.py

clean:
	rm -rf $(VENV) .pytest_cache
