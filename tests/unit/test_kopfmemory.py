"""labop.kopfmemory: kopf's per-object memory made for each event and kept for none.

kopf's reactor is not run here: its ``ResourceMemories`` is called as kopf's processing calls it;
the names the module relies on are checked against the installed kopf. Each test restores kopf's
own ``recall`` afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import kopf
import pytest
from kopf._core.reactor import inventory

from labop.kopfmemory import forget_objects


@pytest.fixture(autouse=True)
def kopfs_own_recall(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(inventory.ResourceMemories, "recall", inventory.ResourceMemories.recall)
    yield


def a_raw_body(uid: str) -> kopf.RawBody:
    return cast(kopf.RawBody, {"metadata": {"uid": uid, "name": uid, "namespace": "lab"}})


async def test_without_it_kopf_keeps_a_memory_per_object_until_its_deletion() -> None:
    memories = inventory.ResourceMemories()
    first = await memories.recall(a_raw_body("u1"))
    assert await memories.recall(a_raw_body("u1")) is first
    assert len(list(memories.iter_all_memories())) == 1


async def test_with_it_kopf_gets_a_fresh_memory_for_each_event_and_keeps_none() -> None:
    forget_objects()
    memories = inventory.ResourceMemories()
    first = await memories.recall(a_raw_body("u1"), noticed_by_listing=True)
    second = await memories.recall(a_raw_body("u1"))
    assert first is not second
    assert first.noticed_by_listing and not second.noticed_by_listing, "kopf's arguments still apply"
    assert list(memories.iter_all_memories()) == []


async def test_the_memo_kopf_hands_to_handlers_is_still_a_copy_of_the_operators() -> None:
    forget_objects()
    controller = object()
    memobase: Any = kopf.Memo(controller=controller)  # what kopf passes: the operator's memo
    memory = await inventory.ResourceMemories().recall(a_raw_body("u1"), memobase=memobase)
    assert cast(kopf.Memo, memory.memo).controller is controller


async def test_forgetting_twice_wraps_kopf_once() -> None:
    forget_objects()
    wrapped = inventory.ResourceMemories.recall
    forget_objects()
    assert inventory.ResourceMemories.recall is wrapped


def test_a_kopf_without_an_ephemeral_recall_stops_the_start_with_a_message_naming_the_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def recall(self: Any, raw_body: Any) -> Any:
        raise AssertionError("not called")

    monkeypatch.setattr(inventory.ResourceMemories, "recall", recall)
    with pytest.raises(RuntimeError, match=r"labop\.kopfmemory"):
        forget_objects()
