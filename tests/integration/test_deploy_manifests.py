"""``deploy/``'s manifests: the CRD copy is the CRD, a server dry run of the whole kustomization
passes with no Pod Security warning, the ClusterRole has no wildcard and no secrets, the
operator's Deployment is hardened (the images' requirements: tests/unit/test_image_requirements.py).
"""

from __future__ import annotations

from typing import Any

from tests.support.cluster import CRDS, Cluster
from tests.support.deploy import DEPLOY, SA, SYSTEM_NS, the_one


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


def test_the_operator_deployment_runs_two_hardened_electing_replicas_with_probes_ports_and_limits(
    rendered: list[dict[str, Any]],
) -> None:
    dep = the_one(rendered, "Deployment")
    assert dep["metadata"]["namespace"] == SYSTEM_NS
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = dep["spec"]["template"]["spec"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
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
    env = {e["name"]: e.get("value") or e.get("valueFrom") for e in c["env"]}
    assert env["LABOP_METRICS_PORT"] == "8080" and env["LABOP_HEALTH_PORT"] == "8081"
    assert env["LABOP_LEADER_ELECT"] == "true"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert c["command"][:3] == ["kopf", "run", "/app/operator/main.py"] and "--standalone" in c["command"]


def test_a_disruption_budget_keeps_one_operator_pod(rendered: list[dict[str, Any]]) -> None:
    pdb = the_one(rendered, "PodDisruptionBudget")
    dep = the_one(rendered, "Deployment")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]


def test_the_lease_role_names_its_one_lease_wherever_rbac_can(rendered: list[dict[str, Any]]) -> None:
    role = the_one(rendered, "Role")
    assert role["metadata"]["namespace"] == SYSTEM_NS
    by_verbs = {tuple(r["verbs"]): r.get("resourceNames") for r in role["rules"]}
    assert by_verbs == {("get", "update"): ["k8s-lab-operator"], ("create",): None}
    binding = the_one(rendered, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": SYSTEM_NS}]
