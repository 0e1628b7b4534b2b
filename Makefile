# Two commands (README "Quick start"): `make train` and `make test`. Each sets up what it
# needs first (a virtual environment in .venv, the Fashion-MNIST files) and is safe to
# rerun: finished steps are skipped.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Folder holding mnist/ and cifar10-jpeg/ for the tests and studies (shared/data beside
# the checkout by default; set TINYNET_DATA to use another).
TINYNET_DATA ?= $(abspath ../shared/data)
export TINYNET_DATA
# torch is optional for the library, needed by the parity tests and benchmarks. 2.13.0 is
# the CPU build on this project's machines' disk; any other spec downloads gigabytes.
TORCH_SPEC ?= torch==2.13.0
EPOCHS ?= 1

.PHONY: train test setup setup-test data bench studies clean

$(VENV)/.base: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[threads]'
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install -q -e '.[test]' '$(TORCH_SPEC)'
	touch $@

setup: $(VENV)/.base data
setup-test: $(VENV)/.test data

data: $(VENV)/.base
	@bash scripts/get-fashion-mnist.sh $(PY)

train: setup
	$(VENV)/bin/tinynet train --epochs $(EPOCHS) --out runs/train

test: setup-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup-test
	$(PY) -m benchmarks

studies: setup-test
	$(PY) -m experiments all

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
