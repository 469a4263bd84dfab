"""The project's own images (labhttp, operator) as ``make images`` built them: find, build, import.

Role: the one place that reads ``images.env``, the file hack/build-images.sh writes next to the
OCI archives (image names and archive paths), so that ``make cluster-up``, ``make run``, the e2e
tier and the benchmarks agree on the names without repeating them. Why not a constant: the tag
comes from pyproject.toml's version and the archive folder from a hash of every input, both
decided by the build script.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "build-images.sh"
# A cold build on a 2-core machine: Debian base ~1.5 min, each image 1 to 2 min.
BUILD_TIMEOUT = 1800
# hack/build-images.sh's exit code when a prerequisite (root, Linux, buildah) is missing.
EXIT_UNAVAILABLE = 2
# Where the images are published. On the local cluster the node also knows each local build by
# its published name (kind's `load docker-image` semantics), so manifests that name the published
# image (the operator's default LabServer image, deploy/'s operator image) run the local build.
LOCAL_PREFIX = "localhost/k8s-lab/"
PUBLISHED_PREFIX = "ghcr.io/k8s-lab/"


class ImagesUnavailable(RuntimeError):
    """The images cannot be built on this machine; the message says why in one line."""


@dataclass(frozen=True)
class LabImages:
    """images.env of one build: names (``LABHTTP_IMAGE``, ...) and archives (``LABHTTP_ARCHIVE``, ...)."""

    folder: Path
    values: dict[str, str]

    @property
    def labhttp(self) -> str:
        return self.values["LABHTTP_IMAGE"]

    @property
    def operator(self) -> str:
        return self.values["OPERATOR_IMAGE"]

    @property
    def archives(self) -> dict[str, Path]:
        """Image name -> its OCI archive."""
        return {
            self.values["LABHTTP_IMAGE"]: Path(self.values["LABHTTP_ARCHIVE"]),
            self.values["OPERATOR_IMAGE"]: Path(self.values["OPERATOR_ARCHIVE"]),
        }


def read(folder: Path) -> LabImages | None:
    """The images of ``folder`` if its images.env exists and names archives that exist, else None."""
    try:
        text = (folder / "images.env").read_text()
    except FileNotFoundError:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    images = LabImages(folder, values)
    try:
        if not all(path.is_file() for path in images.archives.values()):
            return None
    except KeyError:
        return None
    return images


def current() -> LabImages | None:
    """The images of the working tree's current inputs if they are built already (builds nothing)."""
    done = subprocess.run([str(BUILD_SCRIPT), "--print-dir"], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return None
    return read(Path(done.stdout.strip().splitlines()[-1]))


def build(python: str = sys.executable) -> LabImages:
    """``make images``: build (or find in the cache) the images; ImagesUnavailable where it cannot."""
    env = {**os.environ, "PYTHON": python}
    done = subprocess.run(
        [str(BUILD_SCRIPT)], capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT, check=False
    )
    if done.returncode == EXIT_UNAVAILABLE:
        lines = done.stderr.strip().splitlines() or ["exit 2"]
        raise ImagesUnavailable(lines[-1])
    if done.returncode != 0:
        raise RuntimeError(f"hack/build-images.sh exited {done.returncode}:\n{done.stderr}")
    images = read(Path(done.stdout.strip().splitlines()[-1]))
    if images is None:
        raise RuntimeError(f"hack/build-images.sh printed no complete images folder: {done.stdout!r}")
    return images


def published_name(local: str) -> str:
    """``localhost/k8s-lab/labhttp:0.1.0`` -> ``ghcr.io/k8s-lab/labhttp:0.1.0``."""
    if not local.startswith(LOCAL_PREFIX):
        raise ValueError(f"not a local k8s-lab image: {local}")
    return PUBLISHED_PREFIX + local.removeprefix(LOCAL_PREFIX)


class _Importer(Protocol):
    def import_image(self, archive: Path) -> None: ...
    def tag_image(self, source: str, target: str) -> None: ...


def import_into(cluster: _Importer, images: LabImages) -> list[str]:
    """Import every archive into the cluster's real node, also under its published name.

    Returns the image names the node then has.
    """
    names: list[str] = []
    for name, archive in images.archives.items():
        cluster.import_image(archive)
        cluster.tag_image(name, published_name(name))
        names += [name, published_name(name)]
    return names
