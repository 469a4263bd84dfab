"""The OCI archives `make images` writes: valid image layouts whose configs keep the Dockerfiles' contract.

Read as a runtime reads them (containerd's `ctr images import` takes the same files): oci-layout,
index.json naming the image, the manifest, every blob present with its digest and size, the config.
The runtime contract checked is what the pods and the Deployment rely on: uid 65532, the exec-form
entry point, the environment that keeps a read-only root filesystem working, the ports. Also the
records written next to the archives: the base's Debian packages and the wheels with their hashes.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml
from tests.images.conftest import REPO, Archive, Built

pytestmark = pytest.mark.timeout(1800)

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
NAMES = ("LABHTTP", "OPERATOR")


def archive_of(built: Built, name: str) -> Archive:
    return Archive(Path(built.images[f"{name}_ARCHIVE"]))


def test_the_images_are_tagged_with_the_project_version_and_live_in_the_cache(built: Built) -> None:
    assert built.images["LABHTTP_IMAGE"] == f"localhost/k8s-lab/labhttp:{VERSION}"
    assert built.images["OPERATOR_IMAGE"] == f"localhost/k8s-lab/operator:{VERSION}"
    assert re.fullmatch(r"images-[0-9a-f]{12}", built.folder.name)
    assert not built.folder.is_relative_to(REPO)
    for name in NAMES:
        assert Path(built.images[f"{name}_ARCHIVE"]).parent == built.folder


@pytest.mark.parametrize("name", NAMES)
def test_each_archive_is_a_complete_oci_image_layout(built: Built, name: str) -> None:
    archive = archive_of(built, name)
    assert archive.layout == {"imageLayoutVersion": "1.0.0"}
    assert archive.index["schemaVersion"] == 2
    entry = archive.index_entry
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == built.images[f"{name}_IMAGE"]
    assert archive.manifest["schemaVersion"] == 2
    assert archive.manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    layers = archive.manifest["layers"]
    assert layers, "an image without layers"
    assert {layer["mediaType"] for layer in layers} <= {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    }
    # Every blob the manifest names is there, with the digest and size it claims.
    with tarfile.open(archive.path) as tar:
        for descriptor in [entry, archive.manifest["config"], *layers]:
            member = tar.extractfile(Archive.blob_name(descriptor["digest"]))
            assert member is not None
            digest, size = hashlib.sha256(), 0
            while chunk := member.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            assert f"sha256:{digest.hexdigest()}" == descriptor["digest"]
            assert size == descriptor["size"]
    blob = archive.config_blob
    assert blob["os"] == "linux"
    assert blob["architecture"] in {"amd64", "arm64"}
    assert blob["rootfs"]["type"] == "layers"
    assert len(blob["rootfs"]["diff_ids"]) == len(layers)


def test_labhttp_keeps_the_runtime_contract_of_servers_dockerfile(built: Built) -> None:
    config = archive_of(built, "LABHTTP").config
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["python", "-m", "labhttp"]
    assert not config.get("Cmd"), "the base's CMD must not leak into the image"
    assert config["WorkingDir"] == "/app"
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9090/tcp"}
    env = archive_of(built, "LABHTTP").env
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONPATH"] == "/app"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION


def test_the_operator_keeps_the_runtime_contract_of_its_dockerfile_and_deployment(built: Built) -> None:
    archive = archive_of(built, "OPERATOR")
    config, env = archive.config, archive.env
    assert config["User"] == "65532:65532"
    deployment = yaml.safe_load((REPO / "deploy" / "manager" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert config["Entrypoint"] == container["command"]
    assert config["Entrypoint"] == [
        "kopf",
        "run",
        "/app/operator/main.py",
        "--all-namespaces",
        "--standalone",
    ]
    assert not config.get("Cmd")
    assert config["WorkingDir"] == "/app"
    assert set(config["ExposedPorts"]) == {"8080/tcp", "8081/tcp"}
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["VIRTUAL_ENV"] == "/opt/venv"
    assert env["HOME"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_the_base_packages_and_the_wheels_are_recorded_next_to_the_archives(built: Built) -> None:
    packages = dict(
        line.split("\t")[:2] for line in (built.folder / "packages.txt").read_text().splitlines() if line
    )
    assert packages["python3.11"].startswith("3.11.")
    assert {"libc6", "python3-venv", "ca-certificates"} <= set(packages)
    requirements = {
        "labhttp": (REPO / "servers" / "requirements.txt").read_text(),
        "operator": (REPO / "operator" / "requirements.txt").read_text(),
    }
    seen = {"labhttp": 0, "operator": 0}
    for line in (built.folder / "wheels.txt").read_text().splitlines():
        image, sha256, wheel = line.split()
        assert f"--hash=sha256:{sha256}" in requirements[image], f"{wheel} is not pinned for {image}"
        seen[image] += 1
    for image, text in requirements.items():
        assert seen[image] == len(re.findall(r"^\S+==", text, re.M)), f"a pin of {image} has no wheel"
