"""``deploy/``: what ``kubectl apply -k deploy/`` installs, proven on the local control plane.

The manifests: the CRD copy is the CRD, a server dry run of the whole kustomization passes with no
Pod Security warning, the ClusterRole has no wildcard and no secrets (the images' requirements:
tests/unit/test_image_requirements.py). The identity: the operator run with nothing but the
ServiceAccount's own token reconciles a LabServer to Ready with no 403; the same token is refused
what the role does not grant; children with ``blockOwnerDeletion`` pass where
OwnerReferencesPermissionEnforcement is on. ``hack/kind.sh``: without Docker each image or kind
subcommand says so in one line and exits 2, while ``deploy``/``undeploy`` need only kubectl and a
kubeconfig.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import ssl
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api
from kubernetes.client.exceptions import ApiException
from localcluster import components, processes
from localcluster.cluster import free_port
from tests.support.cluster import CRDS, REPO, Cluster
from tests.support.operator import OperatorProcess
from tests.support.waiting import eventually

DEPLOY = REPO / "deploy"
KIND_SH = REPO / "hack" / "kind.sh"
SYSTEM_NS, SA = "k8s-lab-system", "k8s-lab-operator"
SA_USER = f"system:serviceaccount:{SYSTEM_NS}:{SA}"
GROUP, VERSION, PLURAL = "k8slab.dev", "v1alpha1", "labservers"


# --- what deploy/ renders to ------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(control_plane: Cluster) -> list[dict[str, Any]]:
    """Every object of ``kubectl kustomize deploy/``, in kustomize's order."""
    out = subprocess.run(
        [control_plane.kubectl_binary, "kustomize", str(DEPLOY)], check=True, capture_output=True, text=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def the_one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def apply(cluster: Cluster, docs: list[dict[str, Any]], *flags: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", *flags, "-f", "-", input=yaml.safe_dump_all(docs))


@pytest.fixture(scope="module")
def system_namespace(control_plane: Cluster, rendered: list[dict[str, Any]]) -> str:
    """The Namespace, applied for real: a server dry run persists nothing, so objects *in* a namespace
    the same dry run would create are refused (NotFound). A real ``kubectl apply -k deploy/`` has no
    such problem: kubectl sends the Namespace first and it exists when the rest arrives."""
    apply(control_plane, [the_one(rendered, "Namespace")])
    return SYSTEM_NS


# --- the manifests ----------------------------------------------------------------------------


def test_the_crd_in_deploy_is_a_byte_for_byte_copy_of_crds_labservers_yaml() -> None:
    copy, source = DEPLOY / "crd" / "labservers.yaml", CRDS / "labservers.yaml"
    assert copy.read_bytes() == source.read_bytes(), (
        "deploy/crd/labservers.yaml differs from crds/labservers.yaml: run `make manifests` "
        "(both are generated from operator/labop/api.py)"
    )


def test_a_server_dry_run_of_kubectl_apply_k_deploy_succeeds_with_no_pod_security_warning(
    control_plane: Cluster, system_namespace: str, rendered: list[dict[str, Any]]
) -> None:
    done = control_plane.kubectl("apply", "-k", str(DEPLOY), "--dry-run=server")
    assert done.stdout.count("(server dry run)") == len(rendered), done.stdout
    # The Deployment is checked against the namespace's enforce level ("restricted") on admission.
    assert "PodSecurity" not in done.stderr, done.stderr


def test_the_cluster_role_has_no_wildcard_no_secrets_and_no_privilege_escalation_verbs(
    rendered: list[dict[str, Any]],
) -> None:
    role = the_one(rendered, "ClusterRole")
    assert "aggregationRule" not in role
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in value for value in rule.get(field, [])), rule
        assert "nonResourceURLs" not in rule, rule
        assert "secrets" not in rule["resources"], rule
        assert not {"escalate", "bind", "impersonate", "delete", "deletecollection"} & set(rule["verbs"]), (
            rule
        )


def test_the_cluster_role_binding_binds_that_role_to_the_operators_service_account_only(
    rendered: list[dict[str, Any]],
) -> None:
    binding = the_one(rendered, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": SA}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": SYSTEM_NS}]


def test_the_operator_deployment_runs_one_hardened_replica_with_its_probes_ports_and_limits(
    rendered: list[dict[str, Any]],
) -> None:
    dep = the_one(rendered, "Deployment")
    assert dep["metadata"]["namespace"] == SYSTEM_NS
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == SA
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["image"] == "ghcr.io/k8s-lab/operator:0.1.0"
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 8080, "health": 8081}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert set(c["resources"]) == {"requests", "limits"}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["LABOP_METRICS_PORT"] == "8080" and env["LABOP_HEALTH_PORT"] == "8081"
    assert c["command"][:3] == ["kopf", "run", "/app/operator/main.py"] and "--standalone" in c["command"]


# --- the identity -----------------------------------------------------------------------------


@dataclass
class Identity:
    """The operator's ServiceAccount as a client sees it: a token, the server, the CA, a kubeconfig."""

    token: str
    server: str
    ca: Path
    kubeconfig: Path

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        server: str | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, str]:
        """One HTTP request with the bearer token; (status, body)."""
        request = urllib.request.Request(
            (server or self.server) + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type},
        )
        context = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()


def server_and_ca(cluster: Cluster, folder: Path) -> tuple[str, Path]:
    if cluster.local is not None:
        return cluster.local.server, cluster.local.layout.pki.ca_cert
    # USE_EXISTING_CLUSTER: the same server and CA as the admin kubeconfig's current context.
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    entry = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    if "certificate-authority" in entry:
        return entry["server"], Path(entry["certificate-authority"])
    ca = folder / "ca.crt"
    ca.write_bytes(base64.b64decode(entry["certificate-authority-data"]))
    return entry["server"], ca


def token_for(api: ApiClient, name: str, namespace: str = SYSTEM_NS) -> str:
    """A bound token from the TokenRequest API, as the kubelet would mount into the pod."""
    request = {"spec": {"expirationSeconds": 3600}}
    core: Any = CoreV1Api(api)  # Any: the client takes plain dicts as bodies; its stubs want models
    return str(core.create_namespaced_service_account_token(name, namespace, request).status.token)


def write_kubeconfig(path: Path, server: str, ca: Path, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": SA, "context": {"cluster": "local", "user": SA}}],
        "current-context": SA,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


@pytest.fixture(scope="module")
def operator_identity(
    control_plane: Cluster,
    api: ApiClient,
    rendered: list[dict[str, Any]],
    system_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Identity:
    """deploy/'s Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding applied for real (not
    the Deployment: no image runs here), and a kubeconfig holding nothing but that SA's token."""
    rbac = [d for d in rendered if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    apply(control_plane, rbac)
    folder = tmp_path_factory.mktemp("identity")
    server, ca = server_and_ca(control_plane, folder)
    token = token_for(api, SA)
    return Identity(token, server, ca, write_kubeconfig(folder / "kubeconfig", server, ca, token))


def a_labserver(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LabServer", "metadata": {"name": name}, "spec": spec}


def is_ready(objects: Any, namespace: str, name: str) -> bool:
    ls = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    status = ls.get("status", {})
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    return ready and status.get("observedGeneration") == ls["metadata"]["generation"]


def refusals(log: str) -> list[str]:
    """Every log line that reports a 403 or a Forbidden, traceback lines included."""
    return [line for line in log.splitlines() if re.search(r"\b403\b|forbidden", line, re.I)]


def terminating_namespaces(api: ApiClient) -> list[str]:
    core: Any = CoreV1Api(api)
    return [ns.metadata.name for ns in core.list_namespace().items if ns.status.phase == "Terminating"]


@pytest.mark.cluster
def test_the_operator_reconciles_a_labserver_to_ready_with_nothing_but_its_service_account_token(
    full_cluster: Cluster,
    api: ApiClient,
    namespace: str,
    operator_identity: Identity,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whoami = full_cluster.kubectl(
        f"--kubeconfig={operator_identity.kubeconfig}",
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    )
    assert whoami.stdout == SA_USER
    # In a pod (a CI runner), load_incluster_config would win over KUBECONFIG: take that away.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # The operator serves every namespace: a LabServer left in an earlier test's namespace, still
    # being deleted, would have its children refused with a 403 by NamespaceLifecycle admission
    # (not RBAC). Let those go first, so that any 403 in the log below is this role's fault.
    eventually(lambda: not terminating_namespaces(api), timeout=120, what="no namespace still terminating")
    op = OperatorProcess(operator_identity.kubeconfig, tmp_path / "operator.log")
    op.start()
    objects: Any = CustomObjectsApi(api)
    try:
        ls = objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, a_labserver("rbac", replicas=2)
        )
        eventually(lambda: is_ready(objects, namespace, "rbac"), timeout=120, what="LabServer rbac Ready")
    finally:
        op.stop()
        log = op.log.read_text()
        print("--- operator log tail ---\n" + op.log_tail())
    apps: Any = AppsV1Api(api)
    core: Any = CoreV1Api(api)
    dep = apps.read_namespaced_deployment("rbac", namespace)
    svc = core.read_namespaced_service("rbac", namespace)
    for child in (dep, svc):
        (ref,) = child.metadata.owner_references
        assert (ref.uid, ref.controller, ref.block_owner_deletion) == (ls["metadata"]["uid"], True, True)
        assert "k8s-lab" in {m.manager for m in child.metadata.managed_fields}
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=rbac").items
    assert {"Created", "Ready"} <= {e.reason for e in events if e.involved_object.kind == "LabServer"}
    assert refusals(log) == []
    assert "Not enough permissions" not in log  # kopf's fallback when it may not list/watch CRDs


REFUSED = {
    "list secrets in every namespace": ("GET", "/api/v1/secrets", None),
    "read secrets in its own namespace": ("GET", f"/api/v1/namespaces/{SYSTEM_NS}/secrets", None),
    "list namespaces": ("GET", "/api/v1/namespaces", None),
    "delete a node": ("DELETE", "/api/v1/nodes/kwok-node-0", None),
    "create a ClusterRole": (
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "mine"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        },
    ),
    "create a pod": (
        "POST",
        "/api/v1/namespaces/default/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    ),
    "delete a Deployment": ("DELETE", "/apis/apps/v1/namespaces/default/deployments/any", None),
    "change a LabServer's spec": (
        "PUT",
        f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/any",
        a_labserver("any"),
    ),
}


@pytest.mark.parametrize("attempt", list(REFUSED))
def test_the_operators_identity_is_refused_what_its_role_does_not_grant(
    attempt: str, operator_identity: Identity
) -> None:
    method, path, body = REFUSED[attempt]
    status, text = operator_identity.call(method, path, body)
    assert status == 403, text
    # Refused by RBAC as *this* user, not turned away as anonymous or with a bad token.
    assert f'User "{SA_USER}" cannot' in json.loads(text)["message"]


def test_the_operators_identity_may_list_labservers_everywhere(operator_identity: Identity) -> None:
    status, text = operator_identity.call("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}")
    assert status == 200, text


@pytest.fixture
def enforcing_apiserver(control_plane: Cluster, tmp_path: Path) -> Iterator[str]:
    """A second kube-apiserver on the same etcd, with the OwnerReferencesPermissionEnforcement
    admission plugin on (OpenShift and some distributions enable it; kube-apiserver does not)."""
    if control_plane.local is None:
        pytest.skip("needs the local control plane's binaries and etcd")
    port = free_port()
    argv = [
        f"--secure-port={port}"
        if arg.startswith("--secure-port=")
        else f"--cert-dir={tmp_path / 'certs'}"
        if arg.startswith("--cert-dir=")
        else arg
        for arg in components.kube_apiserver(control_plane.local.layout)
    ]
    argv.append("--enable-admission-plugins=OwnerReferencesPermissionEnforcement")
    proc = processes.spawn("kube-apiserver-enforcing", argv, tmp_path / "apiserver.log", detach=False)
    server = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(control_plane.local.layout.pki.ca_cert))

    def ready() -> bool:
        try:
            with urllib.request.urlopen(server + "/readyz", context=context, timeout=2) as resp:
                return int(resp.status) == 200
        except (OSError, urllib.error.HTTPError):
            return False

    try:
        processes.wait_for("the enforcing kube-apiserver's /readyz", ready, timeout=60, watch=[proc])
        yield server
    finally:
        processes.stop(proc, timeout=10)


def a_child(owner: dict[str, Any], name: str) -> dict[str, Any]:
    meta = owner["metadata"]
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "LabServer",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "example/lab:1"}]},
            },
        },
    }


def test_children_with_block_owner_deletion_pass_owner_references_permission_enforcement_thanks_to_finalizers(
    control_plane: Cluster,
    api: ApiClient,
    namespace: str,
    operator_identity: Identity,
    rendered: list[dict[str, Any]],
    enforcing_apiserver: str,
) -> None:
    objects: Any = CustomObjectsApi(api)
    core: Any = CoreV1Api(api)
    rbac: Any = RbacAuthorizationV1Api(api)
    owner = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, a_labserver("owner"))
    apply_path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{{}}?fieldManager=k8s-lab&force=true"
    ssa = "application/apply-patch+yaml"

    status, text = operator_identity.call(
        "PATCH",
        apply_path.format("kept"),
        a_child(owner, "kept"),
        server=enforcing_apiserver,
        content_type=ssa,
    )
    assert status == 201, text

    # The same role without the labservers/finalizers rule, on a second ServiceAccount: refused.
    role = the_one(rendered, "ClusterRole")
    weaker = "k8s-lab-no-finalizers"
    rules = [r for r in role["rules"] if r["resources"] != ["labservers/finalizers"]]
    assert len(rules) == len(role["rules"]) - 1
    core.create_namespaced_service_account(SYSTEM_NS, {"metadata": {"name": weaker}})
    rbac.create_cluster_role({"metadata": {"name": weaker}, "rules": rules})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": weaker},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": weaker},
            "subjects": [{"kind": "ServiceAccount", "name": weaker, "namespace": SYSTEM_NS}],
        }
    )
    try:
        without = Identity(token_for(api, weaker), operator_identity.server, operator_identity.ca, Path())
        status, text = without.call(
            "PATCH",
            apply_path.format("refused"),
            a_child(owner, "refused"),
            server=enforcing_apiserver,
            content_type=ssa,
        )
        assert status == 403, text
        assert "cannot set blockOwnerDeletion" in json.loads(text)["message"]
    finally:
        rbac.delete_cluster_role_binding(weaker)
        rbac.delete_cluster_role(weaker)
        core.delete_namespaced_service_account(weaker, SYSTEM_NS)


@pytest.mark.cluster
def test_the_operator_pod_is_admitted_under_pod_security_restricted_where_a_root_pod_is_not(
    full_cluster: Cluster, api: ApiClient, operator_identity: Identity, rendered: list[dict[str, Any]]
) -> None:
    core: Any = CoreV1Api(api)
    root_pod = {"metadata": {"name": "root"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(SYSTEM_NS, root_pod, dry_run="All")
    assert refused.value.status == 403 and "violates PodSecurity" in str(refused.value.body)

    # The real Deployment: the ReplicaSet controller creates its pod, which PodSecurity admission
    # checks against "restricted" (kwok then plays the node; the image is never pulled).
    apply(full_cluster, [the_one(rendered, "Deployment")])
    try:
        selector = "app.kubernetes.io/name=k8s-lab,app.kubernetes.io/component=operator"
        pods = eventually(
            lambda: core.list_namespaced_pod(SYSTEM_NS, label_selector=selector).items,
            timeout=60,
            what="the operator's pod to be created",
        )
        assert pods[0].spec.security_context.run_as_user == 65532
        failed = [
            e.message for e in core.list_namespaced_event(SYSTEM_NS).items if e.reason == "FailedCreate"
        ]
        assert failed == []
    finally:
        apps: Any = AppsV1Api(api)
        apps.delete_namespaced_deployment(SA, SYSTEM_NS)


# --- hack/kind.sh and hack/check-flake.sh -----------------------------------------------------


@pytest.fixture
def no_docker(tmp_path: Path) -> dict[str, str]:
    """An environment with a docker CLI whose engine is unreachable, and no kind."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}


def kind_sh(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(KIND_SH), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("subcommand", ["docker-build", "kind-up", "kind-load", "test-kind", "kind-down"])
def test_kind_sh_without_a_docker_engine_says_so_in_one_line_and_exits_2(
    subcommand: str, no_docker: dict[str, str]
) -> None:
    done = kind_sh(subcommand, env=no_docker)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        f"hack/kind.sh {subcommand}: needs a running Docker"
    )
    assert "make cluster-up" in done.stderr


def test_kind_sh_deploy_and_undeploy_need_only_kubectl_and_a_kubeconfig(
    control_plane: Cluster, system_namespace: str, no_docker: dict[str, str], rendered: list[dict[str, Any]]
) -> None:
    env = {**no_docker, "KUBECONFIG": str(control_plane.kubeconfig), "KUBECTL": control_plane.kubectl_binary}
    # Dry runs: a real undeploy would delete the CRD that the other tests of this session use.
    deployed = kind_sh("deploy", "--dry-run=server", env=env)
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.count("(server dry run)") == len(rendered)
    undeployed = kind_sh("undeploy", "--dry-run=server", env=env)
    assert undeployed.returncode == 0, undeployed.stderr
    assert (
        'customresourcedefinition.apiextensions.k8s.io "labservers.k8slab.dev" deleted' in undeployed.stdout
    )


def test_kind_sh_deploy_without_any_kubeconfig_says_so_and_exits_2(no_docker: dict[str, str]) -> None:
    done = kind_sh("deploy", env={**no_docker, "KUBECTL": "/bin/true"})
    assert done.returncode == 2
    assert done.stderr.startswith("hack/kind.sh deploy: needs a cluster: set KUBECONFIG")


@pytest.mark.skipif(
    shutil.which("nix-instantiate") is None, reason="no nix-instantiate (CI: CI=true hack/check-flake.sh)"
)
def test_flake_nix_parses() -> None:
    done = subprocess.run(
        [str(REPO / "hack" / "check-flake.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CI": ""},
    )
    assert done.returncode == 0, done.stderr
