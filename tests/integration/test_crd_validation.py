"""Bad input is refused by the apiserver itself (schema first, CEL next), with a clear message.

Each file in ``examples/invalid/`` carries the message it must produce on an ``# Expect:`` line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.cluster import REPO, Cluster

INVALID = sorted((REPO / "examples" / "invalid").glob("*.yaml"))


def expected_detail(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# Expect:"):
            return line.split(" is invalid: ", 1)[1].strip()
    raise AssertionError(f"{path.name} has no '# Expect:' line")


def test_there_are_invalid_examples_to_check() -> None:
    assert len(INVALID) >= 10


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_an_invalid_labserver_is_rejected_with_its_message(
    path: Path, control_plane: Cluster, namespace: str
) -> None:
    done = control_plane.kubectl("create", "-n", namespace, "-f", str(path), check=False)
    assert done.returncode != 0, f"{path.name} was accepted"
    assert expected_detail(path) in done.stderr
    assert control_plane.kubectl("get", "lsrv", "-n", namespace, "-o", "name").stdout == ""


@pytest.mark.parametrize("example", ["labserver.yaml", "labserver-full.yaml"])
def test_the_valid_examples_are_accepted(example: str, control_plane: Cluster, namespace: str) -> None:
    control_plane.kubectl("create", "-n", namespace, "-f", str(REPO / "examples" / example))


def test_kubectl_explain_teaches_the_spec(control_plane: Cluster) -> None:
    out = control_plane.kubectl("explain", "labserver.spec.listeners").stdout
    assert "port" in out and "name" in out
    assert "DESCRIPTION" in out or "description" in out.lower()
