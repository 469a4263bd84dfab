#!/usr/bin/env bash
# Builds the labhttp and operator images without Docker and without a registry (`make images`), from
# servers/Dockerfile and operator/Dockerfile themselves, as OCI archives in a per-machine cache
# outside the repo, and prints their paths. Why this way: the project's machines have no Docker
# engine, and the nodes import images from tarballs (containerd `ctr images import`), so the files
# users build with Docker are the files built here.
#
#   1. Base: Debian bookworm minbase + python3 (3.11) + python3-venv from Debian's packages
#      (mmdebstrap), imported into buildah as localhost/python:3.11-slim-bookworm with the python
#      image's PATH, LANG and CMD. The Debian archive cannot be pinned by date here, so the exact
#      package versions that went in are written next to it (packages.txt) and next to the images.
#   2. Wheels: every pin of servers/requirements.txt and operator/requirements.txt, hashes required,
#      downloaded on the host for the base's Python (CPython 3.11, manylinux for its glibc and arch):
#      pip inside the build cannot reach PyPI.
#   3. Images: `buildah bud` (daemonless; storage driver vfs, isolation chroot, storage under the
#      cache) of each Dockerfile with PYTHON_IMAGE=the local base, on a copy of its build context
#      (the repository's root as the Dockerfile's COPYs see it: its folder and shared/labkit) whose
#      DIR/wheels/ holds the downloaded wheels (in the repository wheels/ is empty, so a Docker
#      build installs from PyPI; both paths use --require-hashes). Tagged
#      localhost/k8s-lab/labhttp:VERSION and localhost/k8s-lab/operator:VERSION (pyproject.toml's
#      version) and pushed to oci-archive files.
#
# Cache: ${K8SLAB_CACHE:-${XDG_CACHE_HOME:-~/.cache}/k8s-lab}/
#   base-python3.11-bookworm-<hash of the base recipe>/rootfs.tar(.sha256), packages.txt (not images-*: a
#     glob over old image folders must not take the base with them)
#   images-<hash of every input>/labhttp-VERSION.oci.tar, operator-VERSION.oci.tar, packages.txt,
#     wheels.txt, images.env (tags and paths)
#   buildah/ (buildah's storage: the base image; built images are removed once archived)
# A folder that is complete is reused as it is (a warm run builds nothing); any change of a
# Dockerfile, a requirements file, the servers' or the operator's code, the version or this script
# gives a new folder. An old folder can be deleted.
#
# Needs root on Linux with buildah and mmdebstrap; as root with apt-get, missing ones are installed
# from Debian's packages first (as CI, a fresh machine, needs). Exit 2 when a prerequisite is missing.
# Usage: hack/build-images.sh [--print-dir]   (--print-dir: print the images folder, build nothing)
# Environment: PYTHON (python3; its pip downloads the wheels), K8SLAB_CACHE, XDG_CACHE_HOME.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
log() { printf '[images] %s\n' "$*" >&2; }
die() { log "$1"; exit "${2:-1}"; }

VERSION=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' "$repo/pyproject.toml" | head -n1)
[ -n "$VERSION" ] || die "no version = \"...\" in pyproject.toml"
BASE_TAG=localhost/python:3.11-slim-bookworm
LABHTTP_TAG=localhost/k8s-lab/labhttp:$VERSION
OPERATOR_TAG=localhost/k8s-lab/operator:$VERSION
PYTHON=${PYTHON:-python3}

# The base recipe: what goes into it and from where. Its hash names the base's folder.
BASE_SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
BASE_MIRRORS=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
# Like the python:slim images: no manuals, no documentation but the copyright files, no translations.
BASE_DPKG_OPTIONS=(
  "path-exclude=/usr/share/man/*"
  "path-exclude=/usr/share/doc/*"
  "path-include=/usr/share/doc/*/copyright"
  "path-exclude=/usr/share/locale/*"
  "path-exclude=/usr/share/info/*"
)
BASE_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
BASE_RECIPE="v1 $BASE_SUITE variant=minbase $BASE_PACKAGES ${BASE_MIRRORS[*]} ${BASE_DPKG_OPTIONS[*]} ${BASE_ENV[*]}"

cache_root=${K8SLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/k8s-lab}
base_hash=$(printf '%s' "$BASE_RECIPE" | sha256sum | cut -c1-12)
base_dir=$cache_root/base-python3.11-$BASE_SUITE-$base_hash

# Every input of the images: this script, the base recipe, both Dockerfiles and build contexts as
# their COPY instructions see them (byte code and wheels/ left out), the version.
context_files() {
  (cd "$repo" && find servers/Dockerfile servers/requirements.txt servers/labhttp servers/wheels \
    operator/Dockerfile operator/requirements.txt operator/main.py operator/labop operator/wheels \
    shared/labkit -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name '*.whl' | LC_ALL=C sort)
}
inputs_hash=$(
  {
    printf '%s\n' "$VERSION" "$BASE_RECIPE"
    cat "$0"
    context_files | while read -r f; do printf '%s\n' "$f"; cat "$repo/$f"; done
  } | sha256sum | cut -c1-12
)
out=$cache_root/images-$inputs_hash
if [ "${1:-}" = "--print-dir" ]; then echo "$out"; exit 0; fi

LABHTTP_ARCHIVE=$out/labhttp-$VERSION.oci.tar
OPERATOR_ARCHIVE=$out/operator-$VERSION.oci.tar
report() {
  log "labhttp:  $LABHTTP_TAG  $LABHTTP_ARCHIVE ($(du -m "$LABHTTP_ARCHIVE" | cut -f1) MB)"
  log "operator: $OPERATOR_TAG  $OPERATOR_ARCHIVE ($(du -m "$OPERATOR_ARCHIVE" | cut -f1) MB)"
  echo "$out"
}
if [ -f "$out/images.env" ]; then
  log "images up to date in $out"
  report
  exit 0
fi

# --- prerequisites ---------------------------------------------------------------------------------
[ "$(uname -s)" = Linux ] || die "needs Linux (buildah, mmdebstrap); on other systems use \`make docker-build\`" 2
[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap and buildah run as root here); on a machine with Docker use \`make docker-build\`" 2
need=()
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 ||
    die "needs ${need[*]} (Debian/Ubuntu packages; no apt-get here to install them)" 2
  log "installing Debian's ${need[*]} with apt-get (needed once per machine)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip: the wheels are downloaded with it" 2

store=$cache_root/buildah
bah() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }
export BUILDAH_ISOLATION=chroot
mkdir -p "$cache_root"
# What a killed build left behind (a build running now is younger than that).
find "$cache_root" -maxdepth 1 -name '.images-build.*' -mmin +180 -exec rm -rf {} + 2>/dev/null || true
work=$(mktemp -d "$cache_root/.images-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- 1. the base ------------------------------------------------------------------------------------
if [ ! -f "$base_dir/rootfs.tar.sha256" ]; then
  log "base: Debian $BASE_SUITE minbase + $BASE_PACKAGES (mmdebstrap) ..."
  start=$SECONDS
  mkdir -p "$work/base"
  dpkg_options=()
  for o in "${BASE_DPKG_OPTIONS[@]}"; do dpkg_options+=(--dpkgopt="$o"); done
  mmdebstrap --quiet --mode=root --variant=minbase --include="$BASE_PACKAGES" "${dpkg_options[@]}" \
    --customize-hook='chroot "$1" dpkg-query -W -f='"'"'${Package}\t${Version}\t${Architecture}\n'"'"' >'"'$work/base/packages.txt'" \
    "$BASE_SUITE" "$work/base/rootfs.tar" "${BASE_MIRRORS[@]}"
  (cd "$work/base" && sha256sum rootfs.tar >rootfs.tar.sha256)
  rm -rf "$base_dir" && mv "$work/base" "$base_dir"
  log "  done in $((SECONDS - start))s: $base_dir ($(du -m "$base_dir/rootfs.tar" | cut -f1) MB)"
fi
# The base in buildah's store, labelled with its tarball's digest: imported again when the store has
# another one (a base rebuilt from a newer Debian archive, or another recipe).
base_id=$(cut -c1-64 "$base_dir/rootfs.tar.sha256")
if [ "$(bah inspect --type image --format '{{index .ImageAnnotations "dev.k8slab.base"}}' "$BASE_TAG" 2>/dev/null)" != "$base_id" ]; then
  log "base: importing into buildah as $BASE_TAG ..."
  start=$SECONDS
  ctr=$(bah from scratch)
  bah add --quiet "$ctr" "$base_dir/rootfs.tar" /
  env_flags=()
  for e in "${BASE_ENV[@]}"; do env_flags+=(--env "$e"); done
  bah config "${env_flags[@]}" --cmd python3 --annotation "dev.k8slab.base=$base_id" "$ctr"
  bah commit --quiet --rm "$ctr" "$BASE_TAG" >/dev/null
  log "  done in $((SECONDS - start))s"
fi

# --- 2. the wheels, for the base's Python ------------------------------------------------------------
py_version=$(awk -F'\t' '$1 == "python3.11" { print "3.11" }' "$base_dir/packages.txt")
[ "$py_version" = 3.11 ] || die "the base has no python3.11 (see $base_dir/packages.txt)"
# manylinux wheels for the base's glibc and every older one (pip expands only the legacy aliases).
glibc_minor=$(awk -F'\t' '$1 == "libc6" { split($2, v, "."); print v[2] + 0 }' "$base_dir/packages.txt")
[ "${glibc_minor:-0}" -ge 17 ] || die "no glibc >= 2.17 in the base (see $base_dir/packages.txt)"
arch=$(uname -m)
platform=manylinux_2_${glibc_minor}_$arch
platforms=()
for ((m = glibc_minor; m >= 5; m--)); do platforms+=(--platform "manylinux_2_${m}_$arch"); done
platforms+=(--platform "manylinux2014_$arch" --platform "manylinux2010_$arch" --platform "manylinux1_$arch")
download() { # download REQUIREMENTS DEST
  mkdir -p "$2"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps \
    --only-binary=:all: --implementation cp --python-version "$py_version" "${platforms[@]}" \
    --dest "$2" -r "$1"
}

# --- 3. the images ----------------------------------------------------------------------------------
# build NAME TAG DIR: a copy of the build context (the repository's DIR and shared/, as the
# Dockerfile's COPYs see them) with the wheels in DIR/wheels/, built from DIR/Dockerfile on the local
# base, pushed to OUT/NAME-VERSION.oci.tar.
build() {
  local name=$1 tag=$2 dir=$3 ctx=$work/$1
  log "$name: wheels for CPython $py_version on $platform ($dir/requirements.txt) ..."
  mkdir -p "$ctx"
  tar -C "$repo" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.whl' -cf - "$dir" shared/labkit |
    tar -C "$ctx" -xf -
  download "$repo/$dir/requirements.txt" "$ctx/$dir/wheels"
  (cd "$ctx/$dir/wheels" && sha256sum -- *.whl | sed "s|^|$name |") >>"$work/out/wheels.txt"
  log "$name: buildah bud -f $dir/Dockerfile --build-arg PYTHON_IMAGE=$BASE_TAG ..."
  local start=$SECONDS
  # Untagged in the store (by image ID), tagged in the archive: a build running at the same time
  # on this machine cannot swap images with this one. The archive is the artifact; the store keeps
  # the base only.
  bah bud --quiet --pull=never --isolation chroot --format oci --iidfile "$ctx.iid" \
    --build-arg "PYTHON_IMAGE=$BASE_TAG" -f "$repo/$dir/Dockerfile" "$ctx" >/dev/null
  bah push --quiet "$(cat "$ctx.iid")" "oci-archive:$work/out/$name-$VERSION.oci.tar:$tag"
  bah rmi "$(cat "$ctx.iid")" >/dev/null
  log "  done in $((SECONDS - start))s"
}
mkdir -p "$work/out"
cp "$base_dir/packages.txt" "$work/out/packages.txt"
build labhttp "$LABHTTP_TAG" servers
build operator "$OPERATOR_TAG" operator
cat >"$work/out/images.env" <<EOF
# Written by hack/build-images.sh: the images of this folder (base: $BASE_TAG, $base_dir).
LABHTTP_IMAGE=$LABHTTP_TAG
LABHTTP_ARCHIVE=$LABHTTP_ARCHIVE
OPERATOR_IMAGE=$OPERATOR_TAG
OPERATOR_ARCHIVE=$OPERATOR_ARCHIVE
EOF
rm -rf "$out" && mv "$work/out" "$out"
report
