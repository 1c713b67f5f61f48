# egress-harness: two commands for a newcomer on a fresh machine.
#   make e2e    the suites against a mesh (BACKEND=local by default; root, or a user namespace)
#   make test   the harness's own tests, plus the local-mesh checks
# Both install the system packages they lack (as root on Debian/Ubuntu; otherwise they print the
# command to run), create the virtualenv from pyproject.toml and build Istio on first use.
# Works from any folder (make -f path/to/Makefile): recipes run in the repository.
#   make upgrade FROM=1.30 TO=1.31   an Istio upgrade on one mesh, report in artifacts/upgrade/
#   make diff-config A=dump-or-dir B=dump-or-dir   the semantic Envoy config diff of two saved dumps

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PYTHON ?= python3
VENV ?= $(ROOT)/.venv
BACKEND ?= local
ISTIO_VERSION ?= 1.31
# Relative to where make was started; quoted everywhere, so a space is fine.
ARTIFACTS ?= artifacts
PYTEST_ARGS ?=
# The upgrade run (and the smoke test of it in `make test`) goes FROM → TO.
FROM ?= 1.30
TO ?= $(ISTIO_VERSION)
UPGRADE_ARGS ?=
# kind only: where the images come from. registry pulls kindest/node and Istio's images; source
# builds every image here and runs inside the harness's own dockerd (docs/kind-backend.md).
IMAGES ?= registry

# A bare `make` lists the targets; it installs nothing.
.DEFAULT_GOAL := help

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ART = "$(CURDIR)/$(ARTIFACTS)"
ifneq ($(filter /%,$(ARTIFACTS)),)
ART = "$(ARTIFACTS)"
endif
SYSTEM = cd $(ROOT) && $(PYTHON) -m harness.system_packages
# The mesh runs as root, or in a user namespace of its own (harness.rootless) otherwise.
PYTEST = cd $(ROOT) && $(PY) -m harness.rootless $(PY) -m pytest
# The console script (harness/cli.py): the targets below run its commands, as a user would.
EH = $(VENV)/bin/egress-harness

.PHONY: help e2e test test-kind unit lint format istio istio-from kube-toolchain mesh fortio upgrade diff-config bench-mesh bench-spec bench-egress clean-stale clean clean-cache system-e2e system-test system-kind kind-images kind-clean-images fidelity

help:
	@echo "egress-harness: make TARGET [VARIABLE=value ...]"
	@echo "  e2e          the suites against a mesh (BACKEND=local|kind|cluster, ISTIO_VERSION, SPEC=egress.yaml)"
	@echo "  test         the harness's own tests plus the suites on the local mesh"
	@echo "  test-kind    the suites and the kind tests on one kind cluster (IMAGES=registry|source)"
	@echo "  unit, lint   the tests that need nothing installed; ruff, mypy, gofmt, go vet"
	@echo "  mesh         the local mesh, kept up until Ctrl-C, with its KUBECONFIG line"
	@echo "  upgrade      FROM=1.30 TO=1.31: an Istio upgrade on one mesh, report in ARTIFACTS/upgrade/"
	@echo "  diff-config  A=dump-or-dir B=dump-or-dir: the semantic Envoy config diff"
	@echo "  bench-egress, bench-mesh, bench-spec   what each egress path costs; the mesh's start; a spec's"
	@echo "  fidelity     local and kind summaries side by side"
	@echo "  clean, clean-cache, kind-clean-images   what the harness wrote; everything it built"
	@echo "README.md says more; ARTIFACTS=DIR moves the output, PYTEST_ARGS=... goes to pytest."

$(STAMP): $(ROOT)/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@cd $(ROOT) && $(PY) -m pip install -q -e '.[local,kind,dev]'
	@touch $@

system-e2e:
	@$(SYSTEM) e2e $(if $(DRY_RUN),,$(if $(filter kind,$(BACKEND)),kind))

system-test:
	@$(SYSTEM) test

system-kind:
	@$(SYSTEM) kind

istio: $(STAMP)
	@cd $(ROOT) && $(PY) -m harness.istio_binaries --istio-version $(ISTIO_VERSION)
	@cd $(ROOT) && $(PY) -m harness.gateway_api >/dev/null

# The local mesh's etcd, kube-apiserver, kubectl and pod-streams, built from the Go module proxy once (cached
# per version under ~/.cache/egress-harness/toolchain, shared with the kind images' build).
kube-toolchain: $(STAMP)
	@cd $(ROOT) && $(PY) -m harness.toolchain local-mesh

# The local mesh, kept up until Ctrl-C, with the KUBECONFIG line for kubectl.
mesh: system-e2e $(STAMP) istio kube-toolchain
	cd $(ROOT) && $(EH) mesh --istio-version=$(ISTIO_VERSION)

# Istio's binaries are built (or found) first, with visible progress; a dry run builds nothing.
# BACKEND=kind IMAGES=source: harness.images.with_engine builds the images, then runs pytest in its
# engine's network namespace and tears everything down after (it needs root, as the engine does).
KIND_SOURCE = $(and $(filter kind,$(BACKEND)),$(filter source,$(IMAGES)),$(if $(DRY_RUN),,yes))
# An existing cluster runs in the user's own namespaces: no user namespace of the mesh's (its own
# network namespace would not reach the cluster).
RUNNER = $(if $(KIND_SOURCE),$(PY) -m harness.images.with_engine --istio-version=$(ISTIO_VERSION) --,$(if $(filter cluster,$(BACKEND)),,$(PY) -m harness.rootless))

# A test file or id in PYTEST_ARGS (suites/x.py, suites/x.py::test_y) is what runs, instead of every
# suite: pytest then refuses an id that matches nothing (exit 4), where `suites` beside it ran all.
# SPEC=path/to/egress.yaml runs that egress spec's expectations instead of the seed's suites.
SPEC ?=
SPEC_ARGS = $(if $(SPEC),--egress-spec="$(abspath $(SPEC))")
E2E_PATHS = $(if $(filter suites suites/% ./suites/% %.py,$(foreach w,$(PYTEST_ARGS),$(firstword $(subst ::, ,$(w))))),,$(if $(SPEC),suites/test_egress_spec.py,suites))
# An existing cluster needs none of the local mesh's Debian packages (nor Docker): only istioctl
# (the release's, or for a branch version the one built with Istio) and the kubeconfig.
e2e: $(if $(filter cluster,$(BACKEND)),,system-e2e) $(STAMP) $(if $(DRY_RUN),,istio $(if $(filter local,$(BACKEND)),kube-toolchain))
	cd $(ROOT) && EGRESS_HARNESS_IMAGES=$(IMAGES) $(RUNNER) $(PY) -m pytest $(E2E_PATHS) --egress-backend=$(BACKEND) \
		--egress-istio-version=$(ISTIO_VERSION) --egress-artifacts=$(ART) $(if $(DRY_RUN),--egress-dry-run) $(SPEC_ARGS) $(PYTEST_ARGS)

test: system-test $(STAMP) istio istio-from kube-toolchain fortio
	$(PYTEST) tests suites --ignore=tests/kind --egress-istio-version=$(ISTIO_VERSION) --egress-artifacts=$(ART)/test $(PYTEST_ARGS)

# The suites and the harness's own kind tests (tests/kind: convergence and evidence on kind) on one
# kind cluster; IMAGES as for make e2e (CI: IMAGES=source). Output in $(ARTIFACTS)/kind/.
test-kind: BACKEND = kind
test-kind: system-e2e $(STAMP) istio
	cd $(ROOT) && EGRESS_HARNESS_IMAGES=$(IMAGES) $(RUNNER) $(PY) -m pytest suites tests/kind --egress-backend=kind \
		--egress-istio-version=$(ISTIO_VERSION) --egress-artifacts=$(ART)/kind $(PYTEST_ARGS)

# The harness's own tests that need no mesh, no Istio build, no system package and no root:
# seconds, on a new machine too (.ci/run runs it before make test installs anything). A Go build
# attempted here is refused (EGRESS_HARNESS_NO_BUILDS), so a test that needs one cannot slip in.
UNIT_MARKERS := not mesh and not kind and not envoy and not slow and not istio and not packages
unit: $(STAMP)
	cd $(ROOT) && EGRESS_HARNESS_NO_BUILDS=1 $(PY) -m pytest tests -m "$(UNIT_MARKERS)" --egress-artifacts=$(ART)/unit $(PYTEST_ARGS)

istio-from: $(STAMP)
	@cd $(ROOT) && $(PY) -m harness.istio_binaries --istio-version $(FROM)

# An Istio upgrade FROM → TO on one mesh: both versions are built (or found) first; exit 0 only if
# every phase passed. Report in $(ARTIFACTS)/upgrade/.
upgrade: system-e2e $(STAMP) istio-from
	@cd $(ROOT) && $(PY) -m harness.istio_binaries --istio-version $(TO)
	cd $(ROOT) && $(EH) upgrade --from $(FROM) --to $(TO) --artifacts $(ART) \
		$(if $(SPEC),--spec "$(abspath $(SPEC))") $(UPGRADE_ARGS)

diff-config: $(STAMP)
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make diff-config A=<config_dump.json or folder> B=<...>"; exit 2; }
	@# exit 1 means "they differ" (as diff(1)); only bad input (2) fails the target
	@$(EH) diff-config "$(A)" "$(B)" || test $$? -eq 1

# gofmt and go vet from the Go the builds use (on PATH, or the official tarball's place) on the
# harness's Go module (pod-streams). go vet reads its checked-in go.sum: on a new machine the first
# run downloads those modules (~200 MB) and compiles them, about a minute; later runs take a second.
GO = $(firstword $(shell command -v go 2>/dev/null) $(wildcard /usr/local/go/bin/go) go)
GOFMT = $(firstword $(wildcard $(dir $(GO))gofmt) gofmt)
GO_MODULE = harness/local/pod_streams
lint: $(STAMP)
	cd $(ROOT) && $(PY) -m ruff check . && $(PY) -m ruff format --check . && $(PY) -m mypy
	@command -v $(GO) >/dev/null || { echo "go not found: install Go >= 1.25 (the official tarball into /usr/local/go)"; exit 1; }
	@cd $(ROOT) && unformatted="$$($(GOFMT) -l $(GO_MODULE))" && test -z "$$unformatted" \
		|| { echo "gofmt: not formatted: $$unformatted (run gofmt -w on it)"; exit 1; }
	cd $(ROOT)/$(GO_MODULE) && GOFLAGS=-mod=readonly $(GO) vet ./...

format: $(STAMP)
	cd $(ROOT) && $(PY) -m ruff check --fix . && $(PY) -m ruff format .

bench-mesh: system-e2e $(STAMP) istio kube-toolchain
	cd $(ROOT) && $(PY) -m harness.rootless $(PY) -m harness.bench --istio-version=$(ISTIO_VERSION) --runs 5

# A generated egress spec of HOSTS hosts × 4 expectations on the local mesh: wall time, setup and
# time per expectation, into $(ARTIFACTS)/bench-spec.
HOSTS ?= 50
bench-spec: system-e2e $(STAMP) istio kube-toolchain
	cd $(ROOT) && $(PY) -m harness.rootless $(PY) -m harness.spec.bench --hosts $(HOSTS) \
		--istio-version=$(ISTIO_VERSION) --out $(ART)/bench-spec

# The egress benchmark (issue 12): every egress path under fortio load, into $(ARTIFACTS)/bench.
# REPEATS=3 for medians with their spread (about 3× as long); BENCH_ARGS for the rest (--help).
REPEATS ?= 1
BENCH_ARGS ?=
fortio: $(STAMP)
	@cd $(ROOT) && $(PY) -m harness.toolchain.fortio

bench-egress: system-e2e $(STAMP) istio fortio
	cd $(ROOT) && $(EH) bench --istio-version=$(ISTIO_VERSION) \
		--repeats $(REPEATS) --out $(ART)/bench $(BENCH_ARGS)

# What a SIGKILLed root run left (a run without root leaves nothing: see harness/rootless.py).
# Every kind image from source, cached (about 25 min cold on 2 cores; seconds when cached).
kind-images: system-kind $(STAMP) istio
	cd $(ROOT) && $(PY) -m harness.images.kind_images --istio-version=$(ISTIO_VERSION)

# Removes the kind images and the harness's Docker data (the toolchain stays: rm -rf ~/.cache/egress-harness/toolchain).
kind-clean-images: $(STAMP)
	cd $(ROOT) && $(PY) -m harness.images.engine remove-cache

# The suites on the local mesh and on kind side by side (after `make e2e ARTIFACTS=artifacts/local`
# and `make e2e BACKEND=kind IMAGES=source ARTIFACTS=artifacts/kind`).
fidelity: $(STAMP)
	cd $(ROOT) && $(EH) fidelity $(ART)/local/summary.json $(ART)/kind/summary.json --names local,kind \
		--notes docs/fidelity-notes.txt -o $(ART)/fidelity.md

clean-stale: $(STAMP)
	@cd $(ROOT) && $(PY) -m harness.local.reaper

# Only what the harness wrote, in a folder it made (its marker file): ARTIFACTS=/tmp removes nothing.
clean:
	@cd $(ROOT) && $(PYTHON) -m harness.artifacts clean $(ART)
	@rm -rf $(ROOT)/.pytest_cache

# Everything the harness built or fetched (Istio and Envoy builds, tools, images): one folder.
clean-cache:
	@cd $(ROOT) && $(PYTHON) -c "import shutil; from harness.istio_binaries import cache_root; \
		print('removing', cache_root()); shutil.rmtree(cache_root(), ignore_errors=True)"
