"""Fixtures of the end-to-end tier: a local cluster of its own with a real node, the operator in it.

Role: what a user gets from the README on a root Linux machine, checked end to end: the labhttp and
operator images built without Docker (``make images``, cached) and imported into the real node,
the operator deployed in-cluster with ``kubectl apply -k`` of an overlay of deploy/ (the overlay
only swaps in the local images), LabServer pods running real containers. Why its own cluster
rather than the integration tier's: kwok's nodes are tainted here so that every pod lands on the
real node, as with ``make cluster-up``.

Where the images or the real node cannot be had (not root, not Linux, no buildah) the tier is
skipped, except with ``CI=true``: there it fails, loudly. One real node runs per machine; when
another run's node is up, the fixture waits for it to go (``tests.support.realnode``).
Everything lives in a temp folder removed at the end; a killed run's folder and node are swept
by the next run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import pytest
from localcluster import ClusterSettings, LocalCluster, labimages, nodehost
from localcluster.binaries import bin_dir
from localcluster.cluster import RealNodeUnavailable
from tests.support import realnode
from tests.support.cluster import REPO, Cluster

DIR_PREFIX = "k8s-lab-e2e-"
OPERATOR_NS = "k8s-lab-system"
OPERATOR_DEPLOYMENT = "k8s-lab-operator"


@dataclass
class E2E:
    """The e2e world: the cluster (kubectl, kubeconfig, the local harness), its images, an API client."""

    cluster: Cluster
    local: LocalCluster
    images: labimages.LabImages
    api: kubernetes.client.ApiClient


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(why: str) -> None:
    if _in_ci():
        pytest.fail(f"CI=true but the e2e tier cannot run: {why}")
    pytest.skip(f"e2e tier: {why}")


def _sweep_stale_dirs() -> None:
    """Remove folders (and real nodes) of earlier e2e runs that were killed; each names its owner's pid."""
    for folder in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        try:
            os.kill(int((folder / "owner.pid").read_text()), 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            if nodehost.owns(folder):
                nodehost.teardown(folder)
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass


def overlay(folder: Path, images: labimages.LabImages) -> Path:
    """A kustomization that takes deploy/ unchanged and sets the local images (operator, default)."""
    base = os.path.relpath(REPO / "deploy", folder)
    name, _, tag = images.operator.rpartition(":")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text(
        f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {base}
images:
  - name: ghcr.io/k8s-lab/operator
    newName: {name}
    newTag: "{tag}"
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata: {{name: {OPERATOR_DEPLOYMENT}, namespace: {OPERATOR_NS}}}
      spec:
        template:
          spec:
            containers:
              - name: operator
                env:
                  - {{name: LABOP_DEFAULT_IMAGE, value: "{images.labhttp}"}}
                  - {{name: LABOP_RESYNC_SECONDS, value: "30"}}
"""
    )
    return folder


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2E]:
    if not (os.name == "posix" and os.uname().sysname == "Linux" and os.geteuid() == 0):
        _unavailable("needs root on Linux (the real node and the image build)")
    try:
        images = labimages.build()
    except labimages.ImagesUnavailable as err:
        _unavailable(f"the images cannot be built: {err}")
        raise  # unreachable: _unavailable raises
    _sweep_stale_dirs()
    root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
    (root / "owner.pid").write_text(str(os.getpid()))
    local = LocalCluster(ClusterSettings(root=root, bin_dir=bin_dir(), start_timeout=180.0))
    try:
        local.start_control_plane()
        local.start_workloads()
        try:
            realnode.start_real_node(local, taint_self=False, taint_kwok=True)
        except RealNodeUnavailable as err:
            _unavailable(f"no real node: {err}")
        labimages.import_into(local, images)
        cluster = Cluster(local.kubeconfig, local.layout.binary("kubectl"), local)
        cluster.kubectl("apply", "-k", str(overlay(root / "overlay", images)))
        cluster.kubectl(
            "rollout", "status", "-n", OPERATOR_NS, f"deployment/{OPERATOR_DEPLOYMENT}", "--timeout=240s"
        )
        api = cluster.api_client()
        try:
            yield E2E(cluster, local, images, api)
        finally:
            api.close()  # type: ignore[no-untyped-call]  # ApiClient.close has no annotations
            if local.real_node:  # the tier's last test stops it itself and checks the leftovers
                logs = cluster.kubectl(
                    "logs", "-n", OPERATOR_NS, f"deployment/{OPERATOR_DEPLOYMENT}", check=False
                )
                print("--- operator log tail ---\n" + "\n".join(logs.stdout.splitlines()[-40:]))
    finally:
        local.destroy()
