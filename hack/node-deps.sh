#!/usr/bin/env bash
# The real node's two machine prerequisites from the distribution: iptables (kube-proxy, the
# kubelet and the CNI portmap plugin run it) and libseccomp's headers (runc is built with cgo and
# the seccomp tag; without them it is built without seccomp and pods with a seccomp profile, which
# Pod Security "restricted" requires, cannot start). In CI (CI=true) as root on Debian/Ubuntu it
# installs what is missing with apt-get (about 10 s); anywhere else it says in one line what is
# missing and exits 0: the local cluster then goes on with kwok alone.
set -euo pipefail
log() { printf '[node-deps] %s\n' "$*" >&2; }
[ "$(uname -s)" = Linux ] || exit 0

missing=()
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
pkg-config --exists libseccomp 2>/dev/null || missing+=(libseccomp-dev)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "${CI:-}" = "true" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  log "CI=true and root: installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "the real node needs ${missing[*]} (Debian: apt-get install ${missing[*]}); without them: kwok alone"
fi
