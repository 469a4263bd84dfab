"""localcluster.labimages reads images.env (what hack/build-images.sh writes): names and archives.

Role: the one source of the images' names for cluster-up, make run, the e2e tier and bench-pod;
these tests pin its reading of the file and its refusal of a half-written folder.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from localcluster import labimages

from labop.spec import DEFAULT_IMAGE

REPO = Path(__file__).resolve().parents[2]


def _folder(tmp_path: Path, *, archives: bool = True) -> Path:
    (tmp_path / "images.env").write_text(
        "# Written by hack/build-images.sh\n"
        "LABHTTP_IMAGE=localhost/k8s-lab/labhttp:0.1.0\n"
        f"LABHTTP_ARCHIVE={tmp_path / 'labhttp.oci.tar'}\n"
        "OPERATOR_IMAGE=localhost/k8s-lab/operator:0.1.0\n"
        f"OPERATOR_ARCHIVE={tmp_path / 'operator.oci.tar'}\n"
    )
    if archives:
        for name in ("labhttp.oci.tar", "operator.oci.tar"):
            (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_reads_names_and_archives(tmp_path: Path) -> None:
    images = labimages.read(_folder(tmp_path))
    assert images is not None
    assert images.labhttp == "localhost/k8s-lab/labhttp:0.1.0"
    assert images.operator == "localhost/k8s-lab/operator:0.1.0"
    assert images.archives == {
        "localhost/k8s-lab/labhttp:0.1.0": tmp_path / "labhttp.oci.tar",
        "localhost/k8s-lab/operator:0.1.0": tmp_path / "operator.oci.tar",
    }


def test_no_images_when_an_archive_or_the_file_is_missing(tmp_path: Path) -> None:
    assert labimages.read(tmp_path) is None
    assert labimages.read(_folder(tmp_path, archives=False)) is None


def test_import_into_imports_every_archive_also_under_its_published_name(tmp_path: Path) -> None:
    images = labimages.read(_folder(tmp_path))
    assert images is not None
    imported: list[Path] = []
    tagged: list[tuple[str, str]] = []

    class Cluster:
        def import_image(self, archive: Path) -> None:
            imported.append(archive)

        def tag_image(self, source: str, target: str) -> None:
            tagged.append((source, target))

    names = labimages.import_into(Cluster(), images)
    assert imported == [tmp_path / "labhttp.oci.tar", tmp_path / "operator.oci.tar"]
    assert tagged == [
        ("localhost/k8s-lab/labhttp:0.1.0", "ghcr.io/k8s-lab/labhttp:0.1.0"),
        ("localhost/k8s-lab/operator:0.1.0", "ghcr.io/k8s-lab/operator:0.1.0"),
    ]
    assert set(names) == {images.labhttp, images.operator, *(target for _, target in tagged)}


def test_the_published_names_are_the_ones_our_manifests_use() -> None:
    # The operator's default LabServer image and deploy/'s operator image run the local builds
    # on the local cluster only while these names agree.
    deployment = yaml.safe_load((REPO / "deploy" / "manager" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert container["image"] == labimages.published_name(f"localhost/k8s-lab/operator:{version}")
    assert labimages.published_name(f"localhost/k8s-lab/labhttp:{version}") == DEFAULT_IMAGE
