# Two commands set everything up on a fresh machine:
#   make run    - the main job on its embedded default (no download needed)
#   make test   - the test suite
# Each creates the virtual environment .venv first if it is missing.
PYTHON ?= python3
VENV := .venv
NASTK_DATA ?= $(abspath ../shared/benchmarks)
export NASTK_DATA

$(VENV)/.installed: setup.cfg pyproject.toml constraints-cpu.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints-cpu.txt -e ".[dev,plot]"
	touch $@

.PHONY: venv run test test-all
venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/nastk search

test: $(VENV)/.installed
	$(VENV)/bin/pytest -q -n 2 -W error::ResourceWarning

test-all: $(VENV)/.installed
	$(VENV)/bin/pytest -q -n 2 -m "slow or not slow"
