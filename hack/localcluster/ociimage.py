"""Single-binary OCI images, written as OCI image-layout archives, with no Docker and no registry.

Role: the real node needs its sandbox ("pause") image locally, and the real-node tests need a tiny
server image; both are one static Go binary. ``build_go`` compiles such a program and
``write_archive`` packs it as one uncompressed layer with an image config into the tar format
that ``ctr images import`` reads (``oci-layout``, ``index.json``, ``blobs/sha256/``). The image's
name travels in the ``io.containerd.image.name`` annotation, so the import needs no other flag.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

PAUSE_SOURCE = Path(__file__).resolve().parent.parent / "images" / "pause"
PAUSE_IMAGE = "localhost/k8s-lab/pause:1.0"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
# A fixed time for every tar entry: the same binary always gives the same image digest.
EPOCH = 0


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


def build_go(source: Path, output: Path) -> Path:
    """``go build`` a static binary from a module folder (the Go build cache makes repeats quick)."""
    env = {**os.environ, "CGO_ENABLED": "0", "GOWORK": "off"}
    argv = ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(output), "."]
    subprocess.run(argv, cwd=source, env=env, check=True, capture_output=True)
    return output


def _layer(binary: Path, path_in_image: str) -> Blob:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(path_in_image.lstrip("/"))
        info.size, info.mode, info.mtime = binary.stat().st_size, 0o755, EPOCH
        with binary.open("rb") as data:
            tar.addfile(info, data)
    return Blob(LAYER_TYPE, buf.getvalue())


def _json_blob(media_type: str, obj: object) -> Blob:
    return Blob(media_type, json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, EPOCH
    tar.addfile(info, io.BytesIO(data))


def write_archive(binary: Path, name: str, archive: Path, *, user: str = "65532") -> Path:
    """Write ``archive``: image ``name`` whose entrypoint is ``binary``, copied to ``/<binary name>``."""
    entry = "/" + binary.name
    layer = _layer(binary, entry)
    config = _json_blob(
        CONFIG_TYPE,
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [entry], "User": user, "Env": ["PATH=/"]},
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
        },
    )
    manifest = _json_blob(
        MANIFEST_TYPE,
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        },
    )
    tag = name.rsplit(":", 1)[1]
    annotations = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag}
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{**manifest.descriptor(), "annotations": annotations}],
    }
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, "index.json", json.dumps(index).encode())
        for blob in (layer, config, manifest):
            _add(tar, f"blobs/sha256/{blob.digest.split(':')[1]}", blob.data)
    return archive


def pause_archive(folder: Path, name: str = PAUSE_IMAGE) -> Path:
    """Build the pause program and pack it as image ``name`` in ``folder/pause.tar``."""
    binary = build_go(PAUSE_SOURCE, folder / "pause")
    return write_archive(binary, name, folder / "pause.tar")
