"""The operator as users run it: ``kopf run operator/main.py -A`` in a subprocess of the test
(or ``-n NAMESPACE ...``: ``namespaces``, for a test whose counts must see only its own objects).

It dies with the test run (see ``localcluster.processes``), logs to a file whose tail is shown
when a wait fails, and serves /metrics and /readyz on free loopback ports.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from localcluster import processes
from localcluster.cluster import free_port
from tests.support.cluster import REPO


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log: Path, **settings: str) -> None:
        self.kubeconfig = kubeconfig
        self.kopf_args: tuple[str, ...] = ()  # more flags for `kopf run`, e.g. --log-format=json
        self.extra_env: dict[str, str] = {}  # variables other than LABOP_*, e.g. POD_NAME
        self.namespaces: tuple[str, ...] = ()  # kopf's -n for each; none: -A (every namespace)
        self.log = log
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.settings = settings
        self.proc: processes.Proc | None = None

    def start(self, ready_timeout: float = 60) -> None:
        """Start it and wait for /readyz: its caches synced and its workers running (over
        thousands of objects, under a tracer, that may take longer: ``ready_timeout``)."""
        # Without the in-cluster variables: the operator (like kopf) prefers in-cluster credentials,
        # and a CI runner inside a pod must not point the operator at that cluster.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")}
        env = {
            **inherited,
            "KUBECONFIG": str(self.kubeconfig),
            "LABOP_METRICS_PORT": str(self.metrics_port),
            "LABOP_HEALTH_PORT": str(self.health_port),
            "LABOP_BIND_ADDRESS": "127.0.0.1",
            **{f"LABOP_{k.upper()}": v for k, v in self.settings.items()},
            **self.extra_env,
        }
        argv = [
            sys.executable,
            "-m",
            "kopf",
            "run",
            *self.kopf_args,
            str(REPO / "operator" / "main.py"),
            *([arg for ns in self.namespaces for arg in ("-n", ns)] or ["-A"]),
        ]
        self.proc = processes.spawn("operator", argv, self.log, detach=False, env=env)
        processes.wait_for("the operator's /readyz", self.ready, timeout=ready_timeout, watch=[self.proc])

    def ready(self) -> bool:
        return self._get(self.health_port, "/readyz")[0] == 200

    def metrics_text(self) -> str:
        status, body = self._get(self.metrics_port, "/metrics")
        assert status == 200, body
        return body

    def metric(self, name: str) -> float | None:
        """The value of the one sample ``name`` (with any labels), None if absent or unreachable."""
        try:
            text = self.metrics_text()
        except (OSError, AssertionError):
            return None
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self) -> None:
        if self.proc is not None:
            processes.stop(self.proc, timeout=40)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: no graceful anything, as when a node dies under the operator."""
        if self.proc is not None:
            processes.stop(self.proc, timeout=0)
            self.proc = None

    def log_tail(self) -> str:
        return processes.log_tail(self.log, 40)

    @staticmethod
    def _get(port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
