"""The operator's log follows `kopf run --log-format`: here json, the fields as JSON fields.

Its own module: an operator of its own (no other one runs meanwhile), started as users would,
``kopf run --log-format=json operator/main.py -A``.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient
from tests.support.cluster import Cluster
from tests.support.lab import Lab, a_labserver
from tests.support.operator import OperatorProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.cluster


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_with_kopfs_json_format_every_line_is_json_and_ours_carry_the_fields(
    full_cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    with tempfile.TemporaryDirectory(prefix="k8s-lab-operator-") as folder:
        op = OperatorProcess(full_cluster.kubeconfig, Path(folder) / "operator.log")
        op.kopf_args = ("--log-format=json",)
        op.start()
        try:
            lab = Lab(api, namespace)
            lab.create(a_labserver("json"))
            eventually(lambda: lab.is_ready("json"), timeout=120, what="json Ready")

            def ready_line() -> dict[str, Any] | None:
                return next(
                    (
                        line
                        for line in json_lines(op.log)
                        if line.get("message") == "ready changed"
                        and line.get("ready") == "True"
                        and line.get("object") == {"namespace": namespace, "name": "json"}
                    ),
                    None,
                )

            eventually(lambda: ready_line() is not None, timeout=30, what="the ready changed line")
            line = ready_line()
            assert line is not None
            assert line["controller"] == "labserver"
            assert re.fullmatch(r"[0-9a-f]{8}", line["reconcile_id"])
            assert (line["reason"], line["severity"]) == ("Available", "info")
            text = op.log.read_text()
            assert all(row.startswith("{") for row in text.splitlines() if row.strip()), text[-2000:]
        finally:
            op.stop()
            print("--- operator log tail ---\n" + op.log_tail())
