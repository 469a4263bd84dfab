"""Fixtures of the integration tier: a real etcd + kube-apiserver, and on demand the full cluster.

``control_plane`` starts once per session (envtest-style) and installs every CRD in ``crds/``;
``full_cluster`` adds the controller-manager, scheduler and kwok to the same apiserver the first
time a test asks for it; ``real_node`` adds a real node (containerd, kubelet, kube-proxy) for the
tests of one module, tainted so that other tests' pods keep to kwok. Where a real node cannot run
(not root, not Linux) its tests skip, except with ``CI=true``: there they fail; while another run's
real node holds the machine, the fixture waits for it (``tests.support.realnode``). Everything runs
in a temp folder that is removed at the end, and every process dies with the test run, even a
killed one (see ``localcluster.processes``; a killed run's real node is torn down by the next).

The ``deploy/`` tests (``test_deploy_*.py``) share ``rendered`` (what ``kubectl kustomize deploy/``
makes), ``system_namespace`` (its Namespace, applied for real) and ``operator_identity`` (its
RBAC applied and the ServiceAccount's token in a kubeconfig of its own).

``USE_EXISTING_CLUSTER=true`` (the envtest convention) runs the tier against the cluster that
``KUBECONFIG`` names instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from localcluster import ClusterSettings, LocalCluster, nodehost
from localcluster.binaries import bin_dir
from localcluster.cluster import RealNodeUnavailable
from tests.support import realnode
from tests.support.cluster import CRDS, Cluster
from tests.support.deploy import SA, SYSTEM_NS, Identity, apply, identity_of, render, the_one
from tests.support.lab import Lab, running_operator
from tests.support.operator import OperatorProcess


def _use_existing() -> bool:
    return os.environ.get("USE_EXISTING_CLUSTER", "").lower() in ("1", "true", "yes")


def _install_crds(cluster: Cluster) -> None:
    if not any(CRDS.glob("*.yaml")):
        return
    cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))


TEST_DIR_PREFIX = "k8s-lab-test-"


def _sweep_stale_test_dirs() -> None:
    """Remove folders of earlier runs that were killed (SIGKILL skips every finaliser).

    Their processes are gone already (they die with their parent); each folder names its
    owner's pid, so a folder of a run still going on is left alone.
    """
    for folder in Path(tempfile.gettempdir()).glob(f"{TEST_DIR_PREFIX}*"):
        try:
            owner = int((folder / "owner.pid").read_text())
            os.kill(owner, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            if nodehost.owns(folder):  # a killed run's real node: its mounts, bridge, chains
                nodehost.teardown(folder)
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


@pytest.fixture(scope="session")
def control_plane() -> Iterator[Cluster]:
    if _use_existing():
        existing = Cluster(Path(os.environ["KUBECONFIG"]), shutil.which("kubectl") or "kubectl", None)
        _install_crds(existing)
        yield existing
        return
    _sweep_stale_test_dirs()
    root = Path(tempfile.mkdtemp(prefix=TEST_DIR_PREFIX))
    (root / "owner.pid").write_text(str(os.getpid()))
    local = LocalCluster(ClusterSettings(root=root, bin_dir=bin_dir()))
    try:
        local.start_control_plane()
        cluster = Cluster(local.kubeconfig, local.layout.binary("kubectl"), local)
        _install_crds(cluster)
        yield cluster
    finally:
        local.destroy()


@pytest.fixture(scope="session")
def full_cluster(control_plane: Cluster) -> Cluster:
    if control_plane.local is not None:
        control_plane.local.start_workloads()
    return control_plane


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def real_node(full_cluster: Cluster) -> Iterator[Cluster]:
    """The session's cluster with a real node for this module's tests; stopped after them."""
    local = full_cluster.local
    if local is None:
        pytest.skip("USE_EXISTING_CLUSTER: the real-node tests need the local harness")
    try:
        realnode.start_real_node(local, taint_self=True, taint_kwok=False)
    except RealNodeUnavailable as err:
        if _in_ci():
            pytest.fail(f"CI=true but the real node cannot start: {err}")
        pytest.skip(f"no real node on this machine: {err}")
    try:
        yield full_cluster
    finally:
        local.stop_real_node()


@pytest.fixture(scope="session")
def api(control_plane: Cluster) -> Iterator[kubernetes.client.ApiClient]:
    client = control_plane.api_client()
    yield client
    client.close()  # type: ignore[no-untyped-call]  # ApiClient.close has no annotations


@pytest.fixture
def namespace(control_plane: Cluster, api: kubernetes.client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting for it to go)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]  # the client sends a dict body as is; its hints name only the model class
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def operator(full_cluster: Cluster) -> Iterator[OperatorProcess]:
    """The operator as users run it, one per test module (``kopf run operator/main.py -A``)."""
    with running_operator(full_cluster) as op:
        yield op


@pytest.fixture
def lab(operator: OperatorProcess, api: kubernetes.client.ApiClient, namespace: str) -> Lab:
    """LabServer calls named by intent, in a fresh namespace, with the operator running."""
    return Lab(api, namespace)


@pytest.fixture(scope="session")
def rendered(control_plane: Cluster) -> list[dict[str, Any]]:
    """Every object of ``kubectl kustomize deploy/``, in kustomize's order."""
    return render(control_plane)


@pytest.fixture(scope="session")
def system_namespace(control_plane: Cluster, rendered: list[dict[str, Any]]) -> str:
    """The Namespace, applied for real: a server dry run persists nothing, so objects *in* a namespace
    the same dry run would create are refused (NotFound). A real ``kubectl apply -k deploy/`` has no
    such problem: kubectl sends the Namespace first and it exists when the rest arrives."""
    apply(control_plane, [the_one(rendered, "Namespace")])
    return SYSTEM_NS


@pytest.fixture(scope="session")
def operator_identity(
    control_plane: Cluster,
    api: kubernetes.client.ApiClient,
    rendered: list[dict[str, Any]],
    system_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Identity:
    """deploy/'s ServiceAccount, ClusterRole, ClusterRoleBinding and the leases Role and RoleBinding
    applied for real (not the Deployment: no image runs here), and a kubeconfig holding nothing but
    that SA's token."""
    kinds = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    rbac = [d for d in rendered if d["kind"] in kinds]
    apply(control_plane, rbac)
    return identity_of(control_plane, api, SA, tmp_path_factory.mktemp("identity"))
