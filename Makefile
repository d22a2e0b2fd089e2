# Two commands set up everything on a fresh machine:
#   make demo   - create .venv, install sriovdp, run the end-to-end demo
#   make test   - also install the test tools (and iproute2 for network namespaces), run pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench install venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

venv: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

demo: install
	$(BIN)/sriovdp demo

test: venv
	@command -v ip >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq iproute2; }
	$(BIN)/pytest

bench: venv
	$(BIN)/python bench/discovery.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
