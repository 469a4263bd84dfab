"""Fixtures for the images tier: the OCI archives `make images` builds, read and run without a daemon.

``built`` runs hack/build-images.sh (what `make images` runs): a no-op when the images of these inputs
are in the cache, a full build (Debian base, wheels, both Dockerfiles with buildah) otherwise. Where
the build cannot run (not root, not Linux, no apt-get for buildah/mmdebstrap: exit 2) the tier is
skipped, except in CI (``CI=true``), where that is a failure: CI runs as root on Debian.

``Archive`` reads an archive as a runtime would (index.json, then the manifest, then the config).
``ImageRoot`` unpacks one with buildah (``buildah from oci-archive:...`` + ``buildah mount``, in the
build's own store) and runs the image's command the way the pods do: as the image's user, with the
image's environment and working directory, on a read-only root filesystem (a read-only bind mount
in a private mount namespace, then chroot), with /dev, /proc and, when the pod has one, a /tmp
volume. Root is needed for the namespace and the chroot; the image's processes run as uid 65532.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "hack" / "build-images.sh"
# A cold build on a 2-core machine: Debian base ~1.5 min, each image 1 to 2 min.
BUILD_TIMEOUT = 1800


@dataclass(frozen=True)
class Built:
    """What hack/build-images.sh reported: the folder and its images.env."""

    folder: Path
    images: Mapping[str, str]


def _build() -> Built:
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        [str(BUILD)], capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT, check=False
    )
    if proc.returncode == 2 and os.environ.get("CI") != "true":
        pytest.skip(f"the images cannot be built here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"hack/build-images.sh exited {proc.returncode}:\n{proc.stderr}"
    folder = Path(proc.stdout.strip().splitlines()[-1])
    images: dict[str, str] = {}
    for line in (folder / "images.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            images[key] = value
    return Built(folder, images)


@pytest.fixture(scope="session")
def built() -> Built:
    return _build()


class Archive:
    """An OCI image-layout tarball: index.json -> the one manifest -> config and layers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with tarfile.open(path) as tar:
            self.names = set(tar.getnames())
            self.layout = self._json(tar, "oci-layout")
            self.index = self._json(tar, "index.json")
            (entry,) = self.index["manifests"]
            self.index_entry: dict[str, Any] = entry
            self.manifest = self._json(tar, self.blob_name(entry["digest"]))
            self.config_blob = self._json(tar, self.blob_name(self.manifest["config"]["digest"]))

    @staticmethod
    def blob_name(digest: str) -> str:
        algorithm, _, hex_digest = digest.partition(":")
        return f"blobs/{algorithm}/{hex_digest}"

    @staticmethod
    def _json(tar: tarfile.TarFile, name: str) -> Any:
        member = tar.extractfile(name)
        assert member is not None, f"{name} is not a file in the archive"
        return json.load(member)

    @property
    def config(self) -> dict[str, Any]:
        """The runtime part of the image config (User, Env, Entrypoint, Cmd, WorkingDir, ...)."""
        config: dict[str, Any] = self.config_blob["config"]
        return config

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.config.get("Env", []))


# Runs in a private mount namespace (unshare --mount): nothing mounted here outlives the process.
# $1 root, $2 user, $3 working dir, $4 "tmp" for a /tmp volume; the rest is the command.
_RUN_SCRIPT = r"""
set -eu
root=$1 user=$2 workdir=$3 tmp=$4
shift 4
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=755,size=1m tmpfs "$root/dev"
for d in null zero full random urandom; do : >"$root/dev/$d"; mount --bind "/dev/$d" "$root/dev/$d"; done
if [ "$tmp" = tmp ]; then mount -t tmpfs -o mode=1777,size=64m tmpfs "$root/tmp"; fi
exec chroot --userspec="$user" "$root" /usr/bin/env --chdir="$workdir" "$@"
"""


class ImageRoot:
    """An archive unpacked by buildah into its store; runs the image's processes read-only as its user."""

    def __init__(self, archive: Archive, store: Path) -> None:
        self.archive = archive
        self._buildah = ["buildah", "--root", str(store / "root"), "--runroot", str(store / "run")]
        self._buildah += ["--storage-driver", "vfs"]
        self.container = self._run("from", "--quiet", f"oci-archive:{archive.path}")
        self.root = Path(self._run("mount", self.container))
        self._image_id = self._run("inspect", "--format", "{{.FromImageID}}", self.container)

    def _run(self, *args: str) -> str:
        proc = subprocess.run(
            [*self._buildah, *args], capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, f"buildah {' '.join(args)}: {proc.stderr}"
        return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""

    def remove(self) -> None:
        """Remove the container, and the image it was made from unless another container still uses it
        (a test run at the same time on this machine: the store is the machine's)."""
        self._run("rm", self.container)
        subprocess.run([*self._buildah, "rmi", self._image_id], capture_output=True, timeout=600, check=False)

    def popen(
        self,
        argv: Sequence[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        tmp_volume: bool = False,
        user: str | None = None,
    ) -> subprocess.Popen[str]:
        """Start ``argv`` (default: the image's Entrypoint + Cmd) as a container of this image would."""
        config = self.archive.config
        command = list(argv) if argv is not None else [*config.get("Entrypoint", []), *config.get("Cmd", [])]
        workdir = config.get("WorkingDir") or "/"
        script = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _RUN_SCRIPT, "sh"]
        script += [str(self.root), user or config["User"], workdir, "tmp" if tmp_volume else "-", *command]
        return subprocess.Popen(
            script,
            env={**self.archive.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, tmp_volume: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to its end (at most 120 s)."""
        proc = self.popen(argv, env=env, tmp_volume=tmp_volume)
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


@pytest.fixture(scope="module")
def image_root(request: pytest.FixtureRequest, built: Built) -> Iterator[ImageRoot]:
    """The image named by the test module's IMAGE ("LABHTTP" or "OPERATOR"), unpacked for running."""
    if os.environ.get("CI") != "true":
        if os.geteuid() != 0:
            pytest.skip("running an image's rootfs needs root (mount namespace, chroot)")
        if shutil.which("buildah") is None:
            pytest.skip("no buildah to unpack the archives (hack/build-images.sh installs it when it builds)")
    archive = Archive(Path(built.images[f"{request.module.IMAGE}_ARCHIVE"]))
    root = ImageRoot(archive, built.folder.parent / "buildah")
    try:
        yield root
    finally:
        root.remove()
