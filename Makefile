# Two commands set up everything on a fresh machine:
#   make demo   - create .venv, install sriovdp, run the end-to-end demo
#   make test   - also install the test tools (and iproute2 for network namespaces), run pytest
#                 (with go on PATH this includes the real-kubelet conformance suite)
#   make conformance - build the kubelet peer (k8s.io/kubernetes) and run only that suite
#   make lint   - ruff, import-linter (layering contracts) and mypy --strict (config: pyproject)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# where the conformance suite builds its kubelet peer (gitignored)
export KUBELET_PEER_BUILD_DIR ?= $(CURDIR)/tests/conformance/kubelet/.bin
# and its DRA peer (etcd, kube-apiserver, structured allocator, kubelet DRA manager; gitignored)
export DRA_PEER_BUILD_DIR ?= $(CURDIR)/tests/conformance/dra/.bin

.PHONY: demo test lint conformance bench bench-root install venv clean

# The tools need Python 3.11 or newer. A $(VENV) whose interpreter is older, or broken (its
# Python gone or unable to start), is removed here, so the rule below builds it again.
VENV_OK := $(shell $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	>/dev/null 2>&1 && echo yes)
ifneq ($(VENV_OK),yes)
ifneq ($(wildcard $(VENV)),)
$(info $(VENV) was made by a Python older than 3.11 or is broken: rebuilding it)
$(shell rm -rf $(VENV))
endif
endif

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and \
		"sriovdp needs Python 3.11 or newer; $(PYTHON) is " + sys.version.split()[0] + \
		": run make with PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# pip runs again only when pyproject.toml changed since the last install (stamp files)
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed

venv: $(VENV)/.installed-test

demo: install
	$(BIN)/sriovdp demo

test: venv
	@command -v ip >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq iproute2; }
	@! command -v go >/dev/null 2>&1 || echo "make test: go is on PATH: the conformance suite \
	first builds its kubelet peer (cold Go caches: ~11 min and the Go module proxy; then \
	seconds). Without it: $(BIN)/pytest -m 'not conformance'"
	$(BIN)/pytest

conformance: venv
	@command -v go >/dev/null 2>&1 || { echo "make conformance: go is not on PATH (needs Go to build the kubelet peer)"; exit 1; }
	cd tests/conformance/kubelet && go build -o $(KUBELET_PEER_BUILD_DIR)/kubeletpeer .
	cd tests/conformance/dra && go build -o $(DRA_PEER_BUILD_DIR)/drapeer .
	$(BIN)/pytest -m conformance tests/conformance

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

# every bench that needs no root; bench-root: the two that create a network namespace
BENCH_NO_ROOT := discovery allocate restart idle config_parse dra kubelet_checkpoint
BENCH_ROOT := health_latency hotplug

bench: venv
	@set -e; for b in $(BENCH_NO_ROOT); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py; done

bench-root: venv
	@set -e; for b in $(BENCH_ROOT); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
