"""Fixtures of the chaos tier: the integration tier's cluster, a fresh operator per scenario,
namespaces cleaned up without the operator watching, and the knobs read from the environment.

Role: reuses ``control_plane``/``full_cluster``/``api`` from ``tests/integration/conftest.py`` (a
separate session: faults here, such as an apiserver restart, never hit the integration tier);
``operator`` starts ``kopf run operator/main.py -A`` per test, so each scenario's log stands alone;
``CHAOS_SEED``/``CHAOS_SEEDS``/``CHAOS_STEPS``/``CHAOS_SCALE`` size the run (``make soak`` raises
them); the session ends with a summary of the recovery figures.
Why per-test operator and quiet clean-up: a namespace left terminating with LabServers in it
would make the next scenario's operator log about it, and blame the wrong scenario.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import CoreV1Api, CustomObjectsApi
from tests.chaos.lab import FIGURES, GROUP, PLURAL, VERSION, Lab, Operator
from tests.integration.conftest import api, control_plane, full_cluster  # noqa: F401  (fixtures)
from tests.support.cluster import Cluster, or_none
from tests.support.waiting import eventually


@dataclass(frozen=True)
class ChaosSettings:
    seed: int  # the first random sequence's seed; CHAOS_SEEDS sequences use seed, seed+1, ...
    seeds: int
    steps: int  # length of each random sequence
    scale: float  # multiplies every scenario's object counts (burst sizes, churn rounds)

    def count(self, base: int) -> int:
        return max(1, round(base * self.scale))


def _settings() -> ChaosSettings:
    seed = os.environ.get("CHAOS_SEED")
    return ChaosSettings(
        seed=int(seed) if seed else int(time.time()) % 1_000_000,
        seeds=int(os.environ.get("CHAOS_SEEDS", "1")),
        steps=int(os.environ.get("CHAOS_STEPS", "40")),
        scale=float(os.environ.get("CHAOS_SCALE", "1")),
    )


SETTINGS = _settings()


def pytest_report_header() -> str:
    s = SETTINGS
    return f"chaos: CHAOS_SEED={s.seed} CHAOS_SEEDS={s.seeds} CHAOS_STEPS={s.steps} CHAOS_SCALE={s.scale:g}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chaos_seed" in metafunc.fixturenames:
        seeds = [SETTINGS.seed + i for i in range(SETTINGS.seeds)]
        metafunc.parametrize("chaos_seed", seeds, ids=[f"seed{s}" for s in seeds])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("chaos recovery figures")
    terminalreporter.write_line(pytest_report_header())
    for what, seconds in FIGURES:
        terminalreporter.write_line(f"{seconds:8.1f} s  {what}")


@pytest.fixture
def chaos() -> ChaosSettings:
    return SETTINGS


def _new_namespace(core: CoreV1Api) -> str:
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]  # the client sends a dict body as is; its hints name only the model class
    return name


def _clean_up(api_client: kubernetes.client.ApiClient, name: str) -> None:
    """Delete the LabServers first (the operator is stopped by now), then the namespace, without
    waiting for it: with no LabServer left in it, the next operator has nothing to do there."""
    objects = CustomObjectsApi(api_client)
    or_none(lambda: objects.delete_collection_namespaced_custom_object(GROUP, VERSION, name, PLURAL))
    or_none(lambda: CoreV1Api(api_client).delete_namespace(name))


@pytest.fixture
def namespace(full_cluster: Cluster, api: kubernetes.client.ApiClient) -> Iterator[str]:  # noqa: F811
    name = _new_namespace(CoreV1Api(api))
    yield name
    _clean_up(api, name)


@pytest.fixture
def other_namespace(full_cluster: Cluster, api: kubernetes.client.ApiClient) -> Iterator[str]:  # noqa: F811
    name = _new_namespace(CoreV1Api(api))
    yield name
    _clean_up(api, name)


@pytest.fixture
def more_namespaces(full_cluster: Cluster, api: kubernetes.client.ApiClient) -> Iterator[Callable[[], str]]:  # noqa: F811
    """A factory of further namespaces, each cleaned up like ``namespace``."""
    made: list[str] = []

    def make() -> str:
        made.append(_new_namespace(CoreV1Api(api)))
        return made[-1]

    yield make
    for name in made:
        _clean_up(api, name)


@pytest.fixture
def operator(
    full_cluster: Cluster,  # noqa: F811
    api: kubernetes.client.ApiClient,  # noqa: F811
    namespace: str,
    other_namespace: str,
    more_namespaces: Callable[[], str],
    tmp_path: Path,
) -> Iterator[Operator]:
    """The operator, started; stopped before the namespaces are cleaned up (it depends on them).

    Started once the apiserver serves LabServers: right after the CRD is installed it answers
    429 "storage is (re)initializing" for a moment, and kopf would log that as an ERROR.
    """
    objects = CustomObjectsApi(api)
    eventually(
        lambda: objects.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1) is not None,
        timeout=60,
        what="the apiserver serving LabServers",
    )
    op = Operator(full_cluster.kubeconfig, tmp_path)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(f"operator logs kept in {tmp_path}")


@pytest.fixture
def lab(api: kubernetes.client.ApiClient, namespace: str, operator: Operator) -> Lab:  # noqa: F811
    return Lab(api, namespace)
