#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok) and, on Linux, the real node's runtime (kubelet, kube-proxy, containerd with its
# runc shim and ctr, runc, and the CNI plugins bridge, host-local, loopback, portmap in cni/) from
# the pinned wrapper modules in hack/tools/ into a per-machine cache outside the repo, and prints
# the folder. A binary already built from the same inputs is reused; a pin
# change (versions.env, go.mod, go.sum or this script) gives a new folder, so a bump rebuilds.
#
# KUBEBUILDER_ASSETS (the envtest convention) naming a folder of ready binaries skips the build.
# Usage: hack/build-bins.sh [--print-dir]   (--print-dir: print the folder only, build nothing)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$here/versions.env"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)
# The real node's runtime only runs on Linux; elsewhere the local cluster uses kwok alone.
NODE_BINARIES=(kubelet kube-proxy containerd containerd-shim-runc-v2 ctr runc cni/bridge cni/host-local cni/loopback cni/portmap)
[ "$(uname -s)" = Linux ] && BINARIES+=("${NODE_BINARIES[@]}")

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
# runc is built with seccomp only where libseccomp's headers are: that choice is an input too.
seccomp=$(pkg-config --exists libseccomp 2>/dev/null && echo seccomp || echo no-seccomp)
inputs_hash=$( (cat "$here/versions.env" "$0" "$here"/tools/*/go.mod "$here"/tools/*/go.sum; echo "$seccomp") |
  sha256sum | cut -c1-12)
cache_root=${K8SLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/k8s-lab}
out="$cache_root/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_containerd-${CONTAINERD_VERSION}"
out+="_runc-${RUNC_VERSION}_cni-${CNI_PLUGINS_VERSION}_${inputs_hash}"
if [ "${1:-}" = "--print-dir" ]; then echo "$out"; exit 0; fi
mkdir -p "$out/cni"

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
# half-written binary that a later run would take for a good one. BUILD_TAGS and CGO_ENABLED may
# be set for one call (runc needs cgo).
build() {
  local dir=$1 ldflags=$2; shift 2
  local start=$SECONDS
  (cd "$here/tools/$dir" && go build -trimpath -tags "${BUILD_TAGS:-$tags}" -ldflags "-s -w $ldflags" -o "$tmp/" "$@")
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
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do want "$b" && k8s+=("k8s.io/kubernetes/cmd/$b"); done
if [ ${#k8s[@]} -gt 0 ]; then
  log "kubernetes ${K8S_VERSION}: ${k8s[*]##*/} ..."
  build kubernetes "$stamp" "${k8s[@]}"
  for p in "${k8s[@]}"; do mv -f "$tmp/${p##*/}" "$out/${p##*/}"; done
fi
if want containerd containerd-shim-runc-v2 ctr; then
  log "containerd ${CONTAINERD_VERSION} ..."
  m=github.com/containerd/containerd/v2
  # Upstream's static build: no cgo, so no btrfs snapshotter (overlayfs and native remain).
  BUILD_TAGS=urfave_cli_no_docs build containerd \
    "-X $m/version.Version=${CONTAINERD_VERSION} -X $m/version.Package=$m -X $m/version.Revision=${CONTAINERD_VERSION}" \
    "$m/cmd/containerd" "$m/cmd/containerd-shim-runc-v2" "$m/cmd/ctr"
  for b in containerd containerd-shim-runc-v2 ctr; do mv -f "$tmp/$b" "$out/$b"; done
fi
if want runc; then
  # runc's nsexec is C: cgo and gcc. seccomp filters need libseccomp's headers (Debian
  # libseccomp-dev); without them runc is built without seccomp and pods' seccomp profiles fail.
  runc_tags=urfave_cli_no_docs
  if [ "$seccomp" = seccomp ]; then runc_tags+=",seccomp"
  else log "WARNING libseccomp headers missing (apt-get install libseccomp-dev): runc without seccomp"; fi
  log "runc ${RUNC_VERSION} (cgo, tags ${runc_tags}) ..."
  CGO_ENABLED=1 BUILD_TAGS=$runc_tags build runc "-X main.version=${RUNC_VERSION#v}" github.com/opencontainers/runc
  mv -f "$tmp/runc" "$out/runc"
fi
if want cni/bridge cni/host-local cni/loopback cni/portmap; then
  log "CNI plugins ${CNI_PLUGINS_VERSION} ..."
  m=github.com/containernetworking/plugins
  build cni "-X $m/pkg/utils/buildversion.BuildVersion=${CNI_PLUGINS_VERSION}" \
    "$m/plugins/main/bridge" "$m/plugins/ipam/host-local" "$m/plugins/main/loopback" "$m/plugins/meta/portmap"
  for b in bridge host-local loopback portmap; do mv -f "$tmp/$b" "$out/cni/$b"; done
fi
log "binaries ready in $out"
echo "$out"
