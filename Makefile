# Two entry points (see README): `make reproduce` runs the main job on the embedded default,
# `make test` runs the test suite. Both create .venv if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_PINS := "torch==2.13.0,!=2.13.0+cpu" torchvision==0.28.0

.PHONY: test reproduce install bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_PINS) -e ".[all]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

reproduce: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" snakemake --cores 2 --rerun-incomplete all

bench: install
	$(PY) benchmarks/bench_graph.py

clean:
	rm -rf $(VENV) results figures .snakemake
