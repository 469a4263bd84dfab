# k8s-lab: `make help` lists every target. Kubebuilder-style: `## text` after a target documents it.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
CLUSTER_DIR := $(CURDIR)/.cluster
# The local cluster's fake nodes: how many, and how many pods each takes (10,000 LabServers at one
# replica fit the defaults; e.g. `make cluster-up KWOK_NODES=10 KWOK_PODS_PER_NODE=2000`).
KWOK_NODES ?= 1
KWOK_PODS_PER_NODE ?= 10000
# A real node (containerd, kubelet, kube-proxy: pods run containers) next to kwok's: auto = when the
# machine allows it (root, Linux, binaries), else one line why not and kwok alone; on = or fail; off.
REAL_NODE ?= auto
# The name the real node's pause (sandbox) image is built and imported as.
SANDBOX_IMAGE ?= localhost/k8s-lab/pause:1.0

##@ General
.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development
.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the exact locked dependencies and the project installed editable.
# Two steps, so that every file installed is one CI tested: (1) the lock, hashes required; it pins the
# build backend too (setuptools, `make lock` takes [build-system].requires with --all-build-deps);
# (2) the project itself, editable, with --no-deps (its dependencies are all in the lock: nothing
# resolved) and --no-build-isolation (the backend is the venv's, just installed by hash, instead of
# an unpinned one pip would fetch into an isolated build environment). setuptools maps each package
# to its folder (pyproject.toml) and installs the console scripts labop, labhttp and k8slab-cluster.
$(VENV)/.installed: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

.PHONY: lock
lock: ## Re-pin Python dependencies (requirements.lock) from pyproject.toml.
	$(PYTHON) -m venv /tmp/k8s-lab-lock && /tmp/k8s-lab-lock/bin/pip install -q pip-tools==7.6.2
	/tmp/k8s-lab-lock/bin/pip-compile -q --no-emit-find-links --no-emit-index-url --generate-hashes --strip-extras --extra dev --all-build-deps --allow-unsafe -o requirements.lock pyproject.toml

##@ Local cluster (real etcd, kube-apiserver, controller-manager, scheduler and kwok; no Docker)
.PHONY: bins
bins: ## Build the control plane and the real node's runtime (once per machine and pin) into the cache; link them in bin/.
	@hack/node-deps.sh
	@dir=$$(hack/build-bins.sh) && mkdir -p bin && for b in $$dir/*; do ln -sfn "$$b" bin/; done && \
	  echo "binaries in $$dir (linked in bin/: export PATH=$(CURDIR)/bin:\$$PATH)"

.PHONY: tool-modules
tool-modules: ## Regenerate hack/tools/*/go.{mod,sum} after a pin change in hack/versions.env.
	hack/gen-tool-modules.sh

.PHONY: cluster-up
cluster-up: venv bins ## Start the local cluster in the background (idempotent; imports built images into the real node); kubeconfig in .cluster/.
	@$(PY) -m localcluster up --dir $(CLUSTER_DIR) --nodes $(KWOK_NODES) --pods-per-node $(KWOK_PODS_PER_NODE) \
	  --real-node $(REAL_NODE) --sandbox-image $(SANDBOX_IMAGE)
	@# The operator's namespace (restricted Pod Security) comes with the local cluster, so that a
	@# server-side dry run of deploy/ can check the namespaced objects too (a dry run creates nothing).
	@bin/kubectl --kubeconfig $(CLUSTER_DIR)/kubeconfig apply -f deploy/namespace.yaml >/dev/null

.PHONY: cluster-down
cluster-down: ## Stop every process of the local cluster and remove its state.
	@if [ -x $(PY) ]; then $(PY) -m localcluster down --dir $(CLUSTER_DIR); else rm -rf $(CLUSTER_DIR); fi

.PHONY: cluster-leftovers
cluster-leftovers: venv ## List what a real node of .cluster left on this machine (exit 1 if anything).
	@$(PY) -m localcluster leftovers --dir $(CLUSTER_DIR)

.PHONY: cluster-status
cluster-status: venv ## Say whether the local cluster is up and healthy.
	@$(PY) -m localcluster status --dir $(CLUSTER_DIR)

##@ Operator
.PHONY: run
run: venv ## Images, local cluster (real node when root on Linux), examples/labserver.yaml until Ready, curl lines; operator in the foreground.
	@hack/run.sh

.PHONY: install
install: bins ## Install the CRD into the cluster of $$KUBECONFIG (default: the local cluster).
	@export KUBECONFIG=$${KUBECONFIG:-$(CLUSTER_DIR)/kubeconfig}; \
	  bin/kubectl apply --server-side -f crds/ && bin/kubectl wait --for=condition=Established --timeout=60s -f crds/

.PHONY: uninstall
uninstall: bins ## Remove the CRD (and so every LabServer) from the cluster of $$KUBECONFIG.
	@export KUBECONFIG=$${KUBECONFIG:-$(CLUSTER_DIR)/kubeconfig}; bin/kubectl delete --ignore-not-found -f crds/

##@ Deploy (into a real cluster; see deploy/README.md)
.PHONY: manifests
manifests: venv ## Generate the CRD from operator/labop/api.py into crds/ and deploy/crd/ (kustomize refuses files outside deploy/).
	$(PY) hack/gen_crd.py

.PHONY: image-requirements
image-requirements: venv ## Re-derive operator/ and servers/requirements.txt (the images' pins) from requirements.lock.
	$(PY) hack/image_requirements.py

.PHONY: images
images: venv ## Build the labhttp and operator images without Docker (buildah, local Debian base) as OCI archives in the cache.
	@PYTHON=$(PY) hack/build-images.sh >/dev/null

.PHONY: deploy
deploy: ## Install the operator into the cluster KUBECONFIG names (kubectl apply -k deploy/).
	hack/kind.sh deploy

.PHONY: undeploy
undeploy: ## Remove it, CRD included (so every LabServer goes too).
	hack/kind.sh undeploy

.PHONY: docker-build
docker-build: ## Build the operator and labhttp images (needs a Docker engine).
	hack/kind.sh docker-build

.PHONY: kind-up
kind-up: ## Create the kind cluster k8s-lab if missing (needs Docker and kind).
	hack/kind.sh kind-up

.PHONY: kind-load
kind-load: ## Load both images into kind.
	hack/kind.sh kind-load

.PHONY: kind-down
kind-down: ## Delete the kind cluster.
	hack/kind.sh kind-down

.PHONY: test-kind
test-kind: ## End to end on kind: build, load, deploy, examples/labserver.yaml until Ready.
	hack/kind.sh test-kind

##@ Test
.PHONY: test
test: venv bins ## Run the whole suite (unit, labhttp, images (builds them), integration, e2e on real pods).
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: venv bins ## End to end on real pods: images built and imported, operator in-cluster (root, Linux).
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: venv bins ## Run the integration tests on a real control plane.
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

.PHONY: test-images
test-images: venv ## Build the images if needed (make images), then check the archives and run each image read-only as uid 65532.
	$(PY) -m pytest tests/images $(PYTEST_ARGS)

.PHONY: test-chaos
test-chaos: venv bins ## Chaos suite: faults against the operator and a real control plane, oracles after each (3-4 min).
	$(PY) -m pytest tests/chaos $(PYTEST_ARGS)

# The soak: the same scenarios, bigger. CHAOS_SEED=N replays a run (its header prints the seed).
SOAK_SCALE ?= 5
SOAK_SEEDS ?= 10
SOAK_STEPS ?= 150
.PHONY: soak
soak: venv bins ## Chaos suite at scale: SOAK_SCALE x the objects, SOAK_SEEDS random walks of SOAK_STEPS steps.
	CHAOS_SCALE=$(SOAK_SCALE) CHAOS_SEEDS=$(SOAK_SEEDS) CHAOS_STEPS=$(SOAK_STEPS) $(PY) -m pytest tests/chaos $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Run the unit tests only (no I/O, no cluster).
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: lint
lint: venv ## Lint and type-check: ruff, ruff format --check, mypy --strict on the code, hack/ and tests/.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@# Where mypy finds the sources: pyproject.toml's mypy_path. hack/'s two scripts alone, second: the
	@# tests import them as hack.gen_crd and hack.image_requirements, and one file may have one name per run.
	$(VENV)/bin/mypy --strict operator/labop operator/main.py servers/labhttp shared/labkit hack/localcluster tests
	$(VENV)/bin/mypy --strict hack/gen_crd.py hack/image_requirements.py

.PHONY: check-flake
check-flake: ## Parse flake.nix (with CI=true as root, installs Debian's nix-bin first).
	hack/check-flake.sh

.PHONY: fmt
fmt: venv ## Format the code with ruff.
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

##@ Benchmarks (figures go to BENCHMARKS.md with machine and date; never asserted in tests)
.PHONY: bench
bench: bench-queue bench-server bench-operator bench-plots bench-pod ## Run every benchmark (bench-operator full size: roughly 1 h on 2 quiet cores, an estimate; QUICK=1 for the quick sizes).

.PHONY: bench-queue
bench-queue: venv ## Work queue: add+get+done cycles/s (1, 4, 16 workers) vs asyncio.Queue, all normal and mixed priorities; a resync pass; memory at 100k keys.
	$(PY) bench/bench_queue.py

.PHONY: bench-failover
bench-failover: venv bins ## Leader failover after SIGKILL and SIGTERM (p50/p95 of 10 trials), a standby's idle RSS and CPU.
	$(PY) bench/bench_failover.py

# bench-operator's knobs: LABEL names bench/results/<date>-<LABEL>.json (e.g. before, after);
# OPERATOR_SRC measures another checkout (a git worktree of an older commit); QUICK=1 runs the
# quick sizes; BENCH_OPERATOR_ARGS passes anything else (--workers 4, --no-floor, ...).
LABEL ?= run
OPERATOR_SRC ?= $(CURDIR)
QUICK ?=
BENCH_OPERATOR_ARGS ?=
BENCH_QUICK_ARGS := --quick --restart-sizes 1000 --memory-size 3000
.PHONY: bench-operator
bench-operator: venv bins ## Operator at N=100..3,000 vs the API floor, restart at 1k/5k, memory at 10k, py-spy flame graph (fresh local cluster per phase; JSON in bench/results/).
	$(PY) bench/bench_operator.py --label $(LABEL) --operator-src $(OPERATOR_SRC) --profile \
	  $(if $(QUICK),$(BENCH_QUICK_ARGS)) $(BENCH_OPERATOR_ARGS)

.PHONY: bench-operator-quick
bench-operator-quick: ## bench-operator at CI size: N=100,300,1000, restart at 1,000, memory at 3,000 (roughly 15-20 min on 2 quiet cores).
	@$(MAKE) --no-print-directory bench-operator QUICK=1

.PHONY: bench-plots
bench-plots: venv ## PNGs of the newest bench/results/*.json per label (time to Ready vs floor, RSS, writes) into bench/plots/.
	$(PY) bench/plot_operator.py

.PHONY: bench-pod
bench-pod: venv bins ## labhttp in a real pod (pod IP, ClusterIP) vs on the host under wrk; LabServer create -> Ready cold and warm (root, Linux).
	$(PY) bench/bench_pod.py

.PHONY: bench-server
bench-server: venv ## Lab HTTP server vs a Go net/http server under wrk on loopback.
	bench/bench_server.sh

##@ Clean up
.PHONY: clean
clean: cluster-down ## Stop the local cluster, remove .venv, bin/ and caches (not the binary cache).
	rm -rf $(VENV) bin .pytest_cache .mypy_cache .ruff_cache .hypothesis k8s_lab.egg-info
