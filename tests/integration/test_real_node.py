"""The real node: containers run, answer on their pod IP and ClusterIP, and leave nothing behind.

Role: proves what kwok cannot: the kubelet registers Ready on containerd + runc, a pod of an image
imported from an OCI archive (no registry) gets Ready under Pod Security "restricted", the host
reaches it on its pod IP and through a ClusterIP (kube-proxy's iptables rules), the apiserver
reaches the kubelet for logs, exec and port-forward, and stopping the node leaves no process,
mount, cgroup, bridge or chain. The image is ``testserver/`` (a static Go HTTP server of ours),
built and imported here. Runs with the ``real_node`` fixture: skipped where a real node cannot
run, failed in CI. Tests run in file order; the last one stops the node.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from localcluster import node, nodehost, ociimage
from tests.support.cluster import Cluster
from tests.support.waiting import eventually

pytestmark = pytest.mark.cluster

IMAGE = "localhost/k8s-lab/testserver:1"
MESSAGE = "hello from a real pod"
SOURCE = Path(__file__).resolve().parent / "testserver"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


@pytest.fixture(scope="module")
def pod_ns(real_node: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A namespace with one test-server pod on the real node and a ClusterIP Service in front."""
    assert real_node.local is not None
    folder = tmp_path_factory.mktemp("image")
    archive = ociimage.write_archive(
        ociimage.build_go(SOURCE, folder / "testserver"), IMAGE, folder / "t.tar"
    )
    real_node.local.import_image(archive)
    ns = f"rn-{uuid.uuid4().hex[:6]}"
    real_node.kubectl("create", "namespace", ns)
    # Pod Security "restricted" (what LabServer namespaces use): seccomp RuntimeDefault needs a
    # runc built with seccomp, non-root and a read-only root filesystem must work too.
    real_node.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    # Pods are refused until the controller-manager made the namespace's `default` ServiceAccount.
    eventually(
        lambda: real_node.kubectl("get", "-n", ns, "serviceaccount/default", check=False).returncode == 0
    )
    real_node.kubectl("apply", "-n", ns, "-f", "-", input=_manifests())
    yield ns
    real_node.kubectl("delete", "namespace", ns, "--wait=false")


def _manifests() -> str:
    toleration = node.REAL_NODE_TAINT
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  nodeSelector: {{type: real}}
  tolerations: [{{key: {toleration["key"]}, operator: Exists, effect: {toleration["effect"]}}}]
  securityContext: {{runAsNonRoot: true, seccompProfile: {{type: RuntimeDefault}}}}
  containers:
  - name: web
    image: {IMAGE}
    imagePullPolicy: Never
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {{drop: [ALL]}}
    env: [{{name: MESSAGE, value: "{MESSAGE}"}}]
    ports: [{{containerPort: 8080}}]
    readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def _field(cluster: Cluster, ns: str, kind: str, path: str) -> str:
    return cluster.kubectl("get", "-n", ns, kind, "-o", f"jsonpath={{{path}}}").stdout


@pytest.fixture(scope="module")
def ready_pod(real_node: Cluster, pod_ns: str) -> str:
    real_node.kubectl("wait", "-n", pod_ns, "--for=condition=Ready", "pod/web", "--timeout=120s")
    return pod_ns


def test_node_is_ready_with_its_address(real_node: Cluster) -> None:
    addresses = _field(real_node, "default", f"node/{node.NODE_NAME}", ".status.addresses[*].address")
    assert nodehost.NODE_IP in addresses.split()
    ready = _field(
        real_node, "default", f"node/{node.NODE_NAME}", '.status.conditions[?(@.type=="Ready")].status'
    )
    assert ready == "True"


def test_pod_answers_on_its_pod_ip(real_node: Cluster, ready_pod: str) -> None:
    pod_ip = _field(real_node, ready_pod, "pod/web", ".status.podIP")
    assert pod_ip.startswith("10.245.0.")
    assert _get(f"http://{pod_ip}:8080/") == MESSAGE


def test_service_answers_on_its_cluster_ip(real_node: Cluster, ready_pod: str) -> None:
    cluster_ip = _field(real_node, ready_pod, "service/web", ".spec.clusterIP")
    # kube-proxy programs the rule shortly after the endpoint turns ready: poll, with a ceiling.
    assert eventually(lambda: _get(f"http://{cluster_ip}/"), timeout=60, what="ClusterIP answers") == MESSAGE


def test_logs_and_exec_reach_the_kubelet(real_node: Cluster, ready_pod: str) -> None:
    logs = real_node.kubectl("logs", "-n", ready_pod, "web").stdout
    assert "listening port=8080" in logs
    out = real_node.kubectl(
        "exec", "-n", ready_pod, "web", "--", "/testserver", "-get", "http://127.0.0.1:8080/"
    )
    assert out.stdout == MESSAGE


def test_pod_reaches_the_apiserver_through_the_kubernetes_service(real_node: Cluster, ready_pod: str) -> None:
    # 10.96.0.1 -> kube-proxy -> the advertised node IP -> the forwarder -> the apiserver on loopback.
    url = "https://10.96.0.1/version"
    out = real_node.kubectl("exec", "-n", ready_pod, "web", "--", "/testserver", "-get", url)
    assert json.loads(out.stdout)["gitVersion"].startswith("v1.")


def test_port_forward(real_node: Cluster, ready_pod: str) -> None:
    argv = [real_node.kubectl_binary, f"--kubeconfig={real_node.kubeconfig}", "port-forward", "-n", ready_pod]
    with subprocess.Popen([*argv, "pod/web", ":8080"], stdout=subprocess.PIPE, text=True) as forward:
        try:
            assert forward.stdout is not None
            first = forward.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 8080"
            match = re.search(r"127\.0\.0\.1:(\d+)", first)
            assert match, first
            assert _get(f"http://127.0.0.1:{match.group(1)}/") == MESSAGE
        finally:
            forward.terminate()


def test_stopping_the_node_leaves_nothing(real_node: Cluster, ready_pod: str) -> None:
    local = real_node.local
    assert local is not None
    errors = local.stop_real_node()
    assert errors == []
    assert nodehost.leftovers(local.layout.root) == []
