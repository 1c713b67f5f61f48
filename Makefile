# egress-harness: two commands for a newcomer on a fresh machine.
#   make e2e    the suites against a mesh (BACKEND=local by default; root, or a user namespace)
#   make test   the harness's own tests, plus the local-mesh checks
#   make upgrade FROM=1.30 TO=1.31   an Istio upgrade on one mesh, report in artifacts/upgrade/
#   make diff-config A=dump-or-dir B=dump-or-dir   the semantic Envoy config diff of two saved dumps
# Both create or refresh the virtualenv from pyproject.toml on their own.

PYTHON ?= python3
VENV ?= .venv
BACKEND ?= local
ISTIO_VERSION ?= 1.31
ARTIFACTS ?= artifacts
PYTEST_ARGS ?=
# The upgrade run (and the smoke test of it in `make test`) goes FROM → TO.
FROM ?= 1.30
TO ?= $(ISTIO_VERSION)
UPGRADE_ARGS ?=

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: e2e test istio istio-from upgrade diff-config bench-mesh clean-stale clean

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

istio-from: $(STAMP)
	@$(PY) -m harness.istio_binaries --istio-version $(FROM)

test: $(STAMP) istio istio-from
	$(PY) -m harness.rootless $(PY) -m pytest tests suites --istio-version=$(ISTIO_VERSION) --artifacts=$(ARTIFACTS)/test \
		--junitxml=$(ARTIFACTS)/test/junit.xml $(PYTEST_ARGS)

# Both versions are built (or found) first; exit 0 only if every phase passed.
upgrade: $(STAMP) istio-from
	@$(PY) -m harness.istio_binaries --istio-version $(TO)
	$(PY) -m harness.rootless $(PY) -m harness.upgrade --from $(FROM) --to $(TO) --artifacts $(ARTIFACTS) $(UPGRADE_ARGS)

diff-config: $(STAMP)
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make diff-config A=<config_dump.json or folder> B=<...>"; exit 2; }
	@# exit 1 means "they differ" (as diff(1)); only bad input (2) fails the target
	@$(PY) -m harness.config_diff $(A) $(B) || test $$? -eq 1

bench-mesh: $(STAMP)
	$(PY) -m harness.rootless $(PY) -m harness.bench --istio-version=$(ISTIO_VERSION) --runs 5

clean-stale: $(STAMP)
	$(PY) -m harness.local.reaper

clean:
	rm -rf $(ARTIFACTS) .pytest_cache
