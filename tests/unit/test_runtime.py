"""labop.runtime: the builder, the generic owner mapping, and that nothing in it is about LabServers.

The LabServer controller runs on it (tests/unit/test_controller.py); the README's second
controller runs on a real apiserver (tests/integration/test_runtime_example.py).
"""

from __future__ import annotations

import ast
import asyncio
import pathlib
import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import labop.runtime
from labop.runtime import ControllerBuilder, GroupKind, Key, Result, key_of
from labop.runtime.controller import controller_owner_key

RUNTIME = pathlib.Path(labop.runtime.__file__).parent


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(RUNTIME.glob("*.py")), ids=lambda p: p.name)
def test_the_runtime_imports_only_itself_the_standard_library_prometheus_and_labkit(
    path: pathlib.Path,
) -> None:
    for module in imported_modules(path):
        top = module.split(".")[0]
        assert (
            module.startswith("labop.runtime")
            or top in sys.stdlib_module_names
            # labkit: the logging shared with labhttp, standard library only itself
            or top in ("prometheus_client", "labkit", "__future__")
        ), f"{path.name} imports {module}"


def a_child(kind: str, group_version: str, owner: str, *, controller: bool = True) -> dict[str, Any]:
    ref = {"apiVersion": group_version, "kind": kind, "name": owner, "uid": "u", "controller": controller}
    return {"metadata": {"name": "child", "namespace": "ns", "ownerReferences": [ref]}}


@pytest.mark.parametrize(
    ("child", "owner", "key"),
    [
        (a_child("ConfigMap", "v1", "cm"), GroupKind("", "ConfigMap"), ("ns", "cm")),
        (a_child("Widget", "example.com/v1", "w"), GroupKind("example.com", "Widget"), ("ns", "w")),
        (a_child("Widget", "example.com/v1", "w"), GroupKind("other.com", "Widget"), None),
        (
            a_child("Widget", "example.com/v1", "w", controller=False),
            GroupKind("example.com", "Widget"),
            None,
        ),
        ({"metadata": {"name": "orphan", "namespace": "ns"}}, GroupKind("", "ConfigMap"), None),
    ],
)
def test_a_child_maps_to_the_primary_that_controls_it(
    child: dict[str, Any], owner: GroupKind, key: Key | None
) -> None:
    assert controller_owner_key(child, owner) == key


def test_the_key_of_a_cluster_scoped_object_has_an_empty_namespace() -> None:
    assert key_of({"metadata": {"name": "node-1"}}) == ("", "node-1")


def test_the_builder_is_immutable_so_a_partial_one_can_be_shared() -> None:
    base = ControllerBuilder("widgets").for_("example.com", "Widget")
    with_children = base.owns("apps", "Deployment")
    assert base.owned == ()
    assert with_children.owned == (GroupKind("apps", "Deployment"),)


def test_a_controller_needs_a_primary_kind() -> None:
    async def reconcile(key: Key) -> Result | None:
        return None

    with pytest.raises(ValueError, match="names no primary kind"):
        ControllerBuilder("nothing").complete(reconcile)


async def test_a_built_controller_reconciles_keys_and_maps_children_to_their_owner() -> None:
    seen: list[Key] = []
    done = asyncio.Event()

    async def reconcile(key: Key) -> Result | None:
        seen.append(key)
        if len(seen) == 2:
            done.set()
        return None

    registry = CollectorRegistry()
    controller = (
        ControllerBuilder("widgets")
        .for_("example.com", "Widget")
        .owns("", "ConfigMap")
        .with_options(workers=1, registry=registry)
        .complete(reconcile, primary_keys=lambda: [("ns", "w"), ("ns", "s")])
    )
    # Without namesakes, an object no primary controls maps to nothing, even if a primary has its name.
    await controller.enqueue_owner({"metadata": {"name": "s", "namespace": "ns"}})
    assert len(controller.queue) == 0
    await controller.start()
    try:
        await controller.enqueue(("ns", "a"))
        await controller.enqueue_owner(a_child("Widget", "example.com/v1", "w"))
        await asyncio.wait_for(done.wait(), timeout=5)
    finally:
        await controller.stop()
    assert seen == [("ns", "a"), ("ns", "w")]
    assert (
        registry.get_sample_value("controller_runtime_max_concurrent_reconciles", {"controller": "widgets"})
        == 1
    )
