#!/usr/bin/env bash
# Images and a kind cluster for k8s-lab: build both images, run them in kind, deploy the operator.
#
#   hack/kind.sh docker-build   build ghcr.io/k8s-lab/operator (operator/Dockerfile) and
#                               ghcr.io/k8s-lab/labhttp (servers/Dockerfile), both with the repository
#                               as context (.dockerignore: only what they COPY)
#   hack/kind.sh kind-up        create the kind cluster (KIND_CLUSTER_NAME, default k8s-lab) if missing
#   hack/kind.sh kind-load      load both images into it (imagePullPolicy IfNotPresent uses them)
#   hack/kind.sh deploy [ARGS]  kubectl apply -k deploy/ [ARGS], then wait for the CRD to be Established
#   hack/kind.sh undeploy [ARGS] kubectl delete -k deploy/ [ARGS] (the CRD goes too: every LabServer with it)
#   hack/kind.sh test-kind      end to end: kind-up, docker-build, kind-load, deploy, operator rolled
#                               out, examples/labserver.yaml applied, `kubectl wait --for=condition=Ready`
#   hack/kind.sh kind-down      delete the kind cluster
#
# docker-build, kind-up, kind-load, test-kind and kind-down need a running Docker engine (and kind);
# without one each prints one line saying what is missing and exits 2. deploy and undeploy need only
# kubectl and a kubeconfig, so they work against any cluster, the local control plane included:
#   KUBECONFIG=.cluster/kubeconfig hack/kind.sh deploy --dry-run=server
# ARGS go to kubectl as they are (e.g. --dry-run=server, --server-side, --context=...).
#
# Environment: KIND_CLUSTER_NAME (k8s-lab), OPERATOR_IMAGE (ghcr.io/k8s-lab/operator:0.1.0; deploy/
# names that image too: change both),
# SERVER_IMAGE (ghcr.io/k8s-lab/labhttp:0.1.0, the operator's default LabServer image),
# KIND_NODE_IMAGE (kind's default),
# KUBECTL (else the project-built kubectl if `make bins` ran, else kubectl on PATH).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-help}
[ $# -gt 0 ] && shift

CLUSTER=${KIND_CLUSTER_NAME:-k8s-lab}
OPERATOR_IMAGE=${OPERATOR_IMAGE:-ghcr.io/k8s-lab/operator:0.1.0}
SERVER_IMAGE=${SERVER_IMAGE:-ghcr.io/k8s-lab/labhttp:0.1.0}
NAMESPACE=k8s-lab-system
CRD=customresourcedefinition/labservers.k8slab.dev

log() { printf '[kind.sh] %s\n' "$*" >&2; }

# missing WHAT: the one line a user sees when a prerequisite is absent; exit 2 (a usage problem,
# not a failure of the thing being built or tested).
missing() {
  printf 'hack/kind.sh %s: %s. The image and kind targets are meant for a machine with Docker and kind; without them, use the local control plane (make cluster-up, make test-integration) and hack/kind.sh deploy with any KUBECONFIG.\n' \
    "$cmd" "$1" >&2
  exit 2
}

need_docker() {
  command -v docker >/dev/null 2>&1 || missing "needs Docker, but there is no docker CLI on PATH"
  docker info >/dev/null 2>&1 || missing "needs a running Docker engine (\`docker info\` failed: no engine, or no access to its socket)"
}

need_kind() {
  command -v kind >/dev/null 2>&1 || missing "needs kind (https://kind.sigs.k8s.io), not found on PATH"
}

find_kubectl() {
  if [ -n "${KUBECTL:-}" ]; then echo "$KUBECTL"; return; fi
  local built
  built="$("$repo/hack/build-bins.sh" --print-dir 2>/dev/null || true)/kubectl"
  if [ -x "$built" ]; then echo "$built"; return; fi
  command -v kubectl 2>/dev/null || true
}

need_kubectl() {
  KUBECTL=$(find_kubectl)
  [ -n "$KUBECTL" ] || missing "needs kubectl (on PATH, in KUBECTL, or built by \`make bins\`), none found"
}

need_kubeconfig() {
  if [ -z "${KUBECONFIG:-}" ] && [ ! -f "$HOME/.kube/config" ]; then
    missing "needs a cluster: set KUBECONFIG (e.g. .cluster/kubeconfig after \`make cluster-up\`) or create ~/.kube/config"
  fi
}

kind_cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; }

docker_build() {
  need_docker
  [ -f "$repo/servers/Dockerfile" ] || { log "servers/Dockerfile not found: the server image cannot be built"; exit 1; }
  log "building $OPERATOR_IMAGE (operator/Dockerfile)"
  docker build -t "$OPERATOR_IMAGE" -f "$repo/operator/Dockerfile" "$repo"
  log "building $SERVER_IMAGE (servers/Dockerfile)"
  docker build -t "$SERVER_IMAGE" -f "$repo/servers/Dockerfile" "$repo"
}

kind_up() {
  need_docker
  need_kind
  if kind_cluster_exists; then
    log "kind cluster $CLUSTER exists"
    return
  fi
  kind create cluster --name "$CLUSTER" --wait 120s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
}

kind_load() {
  need_docker
  need_kind
  kind_cluster_exists || { log "no kind cluster $CLUSTER: run hack/kind.sh kind-up first"; exit 1; }
  kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$SERVER_IMAGE"
}

kind_down() {
  need_docker
  need_kind
  kind delete cluster --name "$CLUSTER"
}

is_dry_run() {
  local arg
  for arg in "$@"; do case "$arg" in --dry-run|--dry-run=server|--dry-run=client) return 0 ;; esac; done
  return 1
}

# The flags of ARGS that choose the cluster, for the kubectl calls after the apply.
target_flags() {
  local arg
  for arg in "$@"; do case "$arg" in --context=*|--kubeconfig=*|--cluster=*|--user=*) printf '%s\n' "$arg" ;; esac; done
}

deploy() {
  need_kubectl
  need_kubeconfig
  "$KUBECTL" apply -k "$repo/deploy" "$@"
  if ! is_dry_run "$@"; then
    local target
    mapfile -t target < <(target_flags "$@")
    "$KUBECTL" "${target[@]}" wait --for=condition=Established "$CRD" --timeout=60s
  fi
}

undeploy() {
  need_kubectl
  need_kubeconfig
  need_kubeconfig
  "$KUBECTL" delete -k "$repo/deploy" --ignore-not-found "$@"
}

test_kind() {
  # Every prerequisite first: nothing is created when one is missing. No KUBECONFIG needed: kind's.
  need_docker
  need_kind
  need_kubectl
  kind_up
  docker_build
  kind_load
  # Talk to the kind cluster only, whatever the caller's current context is.
  KIND_KUBECONFIG=$(mktemp)
  trap 'rm -f "$KIND_KUBECONFIG"' EXIT
  kind get kubeconfig --name "$CLUSTER" >"$KIND_KUBECONFIG"
  export KUBECONFIG=$KIND_KUBECONFIG
  local k=("$KUBECTL")
  deploy
  if ! "${k[@]}" -n "$NAMESPACE" rollout status deployment/k8s-lab-operator --timeout=180s; then
    "${k[@]}" -n "$NAMESPACE" describe pods -l app.kubernetes.io/component=operator >&2 || true
    "${k[@]}" -n "$NAMESPACE" logs deployment/k8s-lab-operator --tail=50 >&2 || true
    exit 1
  fi
  "${k[@]}" apply -f "$repo/examples/labserver.yaml"
  if ! "${k[@]}" wait --for=condition=Ready labserver/hello --timeout=180s; then
    "${k[@]}" get labserver/hello -o yaml >&2 || true
    "${k[@]}" -n "$NAMESPACE" logs deployment/k8s-lab-operator --tail=50 >&2 || true
    exit 1
  fi
  "${k[@]}" get labservers,deployments,services,pods -o wide
  log "test-kind passed; the cluster stays up (hack/kind.sh kind-down removes it)"
}

case "$cmd" in
  docker-build) docker_build ;;
  kind-up) kind_up ;;
  kind-load) kind_load ;;
  kind-down) kind_down ;;
  deploy) deploy "$@" ;;
  undeploy) undeploy "$@" ;;
  test-kind) test_kind ;;
  help | -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" ;;
  *) printf 'hack/kind.sh: unknown subcommand %q (docker-build, kind-up, kind-load, deploy, undeploy, test-kind, kind-down)\n' "$cmd" >&2; exit 2 ;;
esac
