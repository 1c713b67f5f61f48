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
# kind only: where the images come from. registry pulls kindest/node and Istio's images; source
# builds every image here and runs inside the harness's own dockerd (docs/kind-backend.md).
IMAGES ?= registry

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: e2e test istio bench-mesh clean-stale clean kind-images kind-clean-images fidelity

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[kind]'
	@touch $@

istio: $(STAMP)
	@$(PY) -m harness.istio_binaries --istio-version $(ISTIO_VERSION)

# harness.rootless runs pytest as is under root, and in a user namespace otherwise.
# Istio's binaries are built (or found) first, with visible progress; a dry run builds nothing.
# BACKEND=kind IMAGES=source: harness.images.with_engine builds the images, then runs pytest in its
# engine's network namespace and tears everything down after (it needs root, as the engine does).
KIND_SOURCE := $(and $(filter kind,$(BACKEND)),$(filter source,$(IMAGES)),$(if $(DRY_RUN),,yes))
RUNNER := $(if $(KIND_SOURCE),$(PY) -m harness.images.with_engine --istio-version=$(ISTIO_VERSION) --,$(PY) -m harness.rootless)

e2e: $(STAMP) $(if $(DRY_RUN),,istio)
	EGRESS_HARNESS_IMAGES=$(IMAGES) $(RUNNER) $(PY) -m pytest suites --backend=$(BACKEND) --istio-version=$(ISTIO_VERSION) \
		--artifacts=$(ARTIFACTS) --junitxml=$(ARTIFACTS)/junit.xml $(if $(DRY_RUN),--dry-run) $(PYTEST_ARGS)

test: $(STAMP) istio
	$(PY) -m harness.rootless $(PY) -m pytest tests suites --istio-version=$(ISTIO_VERSION) --artifacts=$(ARTIFACTS)/test \
		--junitxml=$(ARTIFACTS)/test/junit.xml $(PYTEST_ARGS)

bench-mesh: $(STAMP)
	$(PY) -m harness.rootless $(PY) -m harness.bench --istio-version=$(ISTIO_VERSION) --runs 5

# Every kind image from source, cached (about 25 min cold on 2 cores; seconds when cached).
kind-images: $(STAMP) istio
	$(PY) -m harness.images.kind_images --istio-version=$(ISTIO_VERSION)

# Removes the kind images and the harness's Docker data (the toolchain stays: rm -rf ~/.cache/egress-harness/toolchain).
kind-clean-images: $(STAMP)
	$(PY) -m harness.images.engine remove-cache

# The suites on the local mesh and on kind side by side (after `make e2e ARTIFACTS=artifacts/local`
# and `make e2e BACKEND=kind IMAGES=source ARTIFACTS=artifacts/kind`).
fidelity: $(STAMP)
	$(PY) -m harness.fidelity $(ARTIFACTS)/local/summary.md $(ARTIFACTS)/kind/summary.md --names local,kind \
		--notes docs/fidelity-notes.txt -o $(ARTIFACTS)/fidelity.md

clean-stale: $(STAMP)
	$(PY) -m harness.local.reaper

clean:
	rm -rf $(ARTIFACTS) .pytest_cache
