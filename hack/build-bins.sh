#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok) from the pinned wrapper modules in hack/tools/ into a per-machine cache outside
# the repo, and prints the folder. A binary already built from the same inputs is reused; a pin
# change (versions.env, go.mod, go.sum or this script) gives a new folder, so a bump rebuilds.
#
# KUBEBUILDER_ASSETS (the envtest convention) naming a folder of ready binaries skips the build.
# Usage: hack/build-bins.sh [--print-dir]   (--print-dir: print the folder only, build nothing)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$here/versions.env"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

log() { printf '[bins] %s\n' "$*" >&2; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  for b in etcd kube-apiserver kubectl; do
    [ -x "$KUBEBUILDER_ASSETS/$b" ] || { log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no $b"; exit 1; }
  done
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

# The folder is named by the pins and a hash of the inputs: a changed pin, go.mod, go.sum or build
# flag (this script) means a new folder and a rebuild (Go's build cache keeps that one short).
inputs_hash=$(cat "$here/versions.env" "$0" "$here"/tools/*/go.mod "$here"/tools/*/go.sum | sha256sum | cut -c1-12)
cache_root=${K8SLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/k8s-lab}
out="$cache_root/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_${inputs_hash}"
if [ "${1:-}" = "--print-dir" ]; then echo "$out"; exit 0; fi
mkdir -p "$out"

missing=()
for b in "${BINARIES[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then
  log "all binaries present in $out"
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { log "go is required to build the control plane (https://go.dev/dl)"; exit 1; }
export GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0
# Upstream's release flags: static, no debug info, the same build tags.
tags=selinux,notest,grpcnotrace
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=${K8S_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
  stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# build MODULE_DIR LDFLAGS PKG... : one `go build` per module, so shared packages compile once.
# Binaries land in $tmp first and move into $out only when whole: an interrupted build leaves no
# half-written binary that a later run would take for a good one.
build() {
  local dir=$1 ldflags=$2; shift 2
  local start=$SECONDS
  (cd "$here/tools/$dir" && go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$tmp/" "$@")
  log "  done in $((SECONDS - start))s"
}

want() { local b; for b in "$@"; do [[ " ${missing[*]} " == *" $b "* ]] && return 0; done; return 1; }
log "building into $out (first build takes a while on a small machine; later runs reuse it)"
if want etcd; then
  log "etcd ${ETCD_VERSION} ..."
  build etcd "" go.etcd.io/etcd/server/v3
  mv "$tmp/v3" "$out/etcd" 2>/dev/null || mv "$tmp/server" "$out/etcd"
fi
if want kwok; then
  log "kwok ${KWOK_VERSION} ..."
  build kwok "" sigs.k8s.io/kwok/cmd/kwok
  mv "$tmp/kwok" "$out/kwok"
fi
k8s=()
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do want "$b" && k8s+=("k8s.io/kubernetes/cmd/$b"); done
if [ ${#k8s[@]} -gt 0 ]; then
  log "kubernetes ${K8S_VERSION}: ${k8s[*]##*/} ..."
  build kubernetes "$stamp" "${k8s[@]}"
  for p in "${k8s[@]}"; do mv -f "$tmp/${p##*/}" "$out/${p##*/}"; done
fi
log "binaries ready in $out"
echo "$out"
