#!/usr/bin/env bash
# Parses flake.nix with nix-instantiate (syntax only: no evaluation, no network, no nixpkgs fetch).
# Where nix-instantiate is missing and we run in CI (CI=true) as root on Debian/Ubuntu, installs it
# first from the distribution: `apt-get install nix-bin` (about 10 s with `apt-get update`).
# Anywhere else a missing nix-instantiate is an error that says how to get one.
# Usage: hack/check-flake.sh [FLAKE]   (default: flake.nix at the repo root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
flake=${1:-$here/../flake.nix}
log() { printf '[check-flake] %s\n' "$*" >&2; }

if ! command -v nix-instantiate >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    log "nix-instantiate not found; CI=true and root: installing Debian's nix-bin with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nix-bin >/dev/null
  else
    log "nix-instantiate not found: install Nix (https://nixos.org/download, or 'apt-get install nix-bin' on Debian/Ubuntu), or run with CI=true as root to let this script install nix-bin"
    exit 1
  fi
fi

command -v nix-instantiate >/dev/null 2>&1 || { log "nix-instantiate still missing after installing nix-bin"; exit 1; }
if ! out=$(nix-instantiate --parse "$flake" 2>&1 >/dev/null); then
  log "$flake does not parse:"
  printf '%s\n' "$out" >&2
  exit 1
fi
log "$flake parses ($(nix-instantiate --version))"
