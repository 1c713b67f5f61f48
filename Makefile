# egress-harness: two commands for a newcomer on a fresh machine.
#   make e2e    the suites against a mesh (BACKEND=local by default; root, or a user namespace)
#   make test   the harness's own tests, plus the local-mesh checks
# Both create or refresh the virtualenv from pyproject.toml on their own.

PYTHON ?= python3
VENV ?= .venv
BACKEND ?= local
ISTIO_VERSION ?= 1.31
ARTIFACTS ?= artifacts
PYTEST_ARGS ?=

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: e2e test istio fortio bench-mesh bench-egress clean-stale clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[kind]'
	@touch $@

istio: $(STAMP)
	@$(PY) -m harness.istio_binaries --istio-version $(ISTIO_VERSION)

# harness.rootless runs pytest as is under root, and in a user namespace otherwise.
# Istio's binaries are built (or found) first, with visible progress; a dry run builds nothing.
e2e: $(STAMP) $(if $(DRY_RUN),,istio)
	$(PY) -m harness.rootless $(PY) -m pytest suites --backend=$(BACKEND) --istio-version=$(ISTIO_VERSION) \
		--artifacts=$(ARTIFACTS) --junitxml=$(ARTIFACTS)/junit.xml $(if $(DRY_RUN),--dry-run) $(PYTEST_ARGS)

test: $(STAMP) istio fortio
	$(PY) -m harness.rootless $(PY) -m pytest tests suites --istio-version=$(ISTIO_VERSION) --artifacts=$(ARTIFACTS)/test \
		--junitxml=$(ARTIFACTS)/test/junit.xml $(PYTEST_ARGS)

bench-mesh: $(STAMP)
	$(PY) -m harness.rootless $(PY) -m harness.bench --istio-version=$(ISTIO_VERSION) --runs 5

# The egress benchmark (issue 12): every egress path under fortio load; artifacts/bench/.
# REPEATS=3 for medians with their spread (about 3× as long); BENCH_ARGS for the rest (--help).
REPEATS ?= 1
BENCH_ARGS ?=
fortio: $(STAMP)
	@$(PY) -m harness.toolchain.fortio

bench-egress: $(STAMP) istio fortio
	$(PY) -m harness.rootless $(PY) -m harness.bench_egress --istio-version=$(ISTIO_VERSION) --repeats $(REPEATS) \
		--out $(ARTIFACTS)/bench $(BENCH_ARGS)

clean-stale: $(STAMP)
	$(PY) -m harness.local.reaper

clean:
	rm -rf $(ARTIFACTS) .pytest_cache
