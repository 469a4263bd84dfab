"""kopf keeps no memory per object for us: it makes one for each event and drops it after.

Role: ``forget_objects()``, called once at startup, makes kopf's per-object memory ephemeral.

Why: kopf keeps a ``ResourceMemory`` for every object it has seen until that object is deleted.
That covers every LabServer, and every Deployment and Service in the watched namespaces, not
only ours. Each one holds a copy of the memo, an error throttler, and the bookkeeping of
indexes, daemons and resume handlers: six small objects with their dicts, about 1 KB per
object, so about 3 KB per LabServer with its two children.
- The operator uses none of it: three event handlers, no index, daemon, timer or state-tracking
  handler (the unit tests of ``labop.handlers`` check the registry), and the memo the handlers
  read is the operator's one ``Controller``, which the copy shares.
- The size is only half the cost. These objects are made during the burst of events that
  creates their object, so they land in the allocator's arenas among that burst's garbage, and
  they keep those arenas from ever being released.
- At 3,000 LabServers created at once, RSS per LabServer was 16.5 KiB with kopf's memory and
  13.2 KiB without it (BENCHMARKS.md).

How: kopf fetches the memory of every event through ``ResourceMemories.recall``. Its
``ephemeral=True`` (used for admission webhooks, before an object exists) makes a fresh memory
and keeps nothing; ``forget_objects`` makes every call ephemeral.

What changes in kopf's behaviour:
- after an unexpected error in kopf's own processing of an event, its throttling delays start
  again from the first one at the next event, instead of growing (our handlers do not raise);
- a daemon, timer, index or resume handler would break. Adding one means removing this module
  first.

Like ``labop.kopfsync``, this reaches a private part of kopf. The version is pinned by the
requirements lock. If an upgrade renames ``recall`` or its ``ephemeral`` parameter,
``forget_objects`` fails at start with a message naming this module, never silently; the unit
tests check the names too.
"""

from __future__ import annotations

import inspect
from typing import Any

from kopf._core.reactor import inventory

__all__ = ["forget_objects"]


def forget_objects() -> None:
    """From now on, kopf remembers nothing per object between events (see the module doc).
    Idempotent; call before kopf's watchers start (a startup handler)."""
    memories = getattr(inventory, "ResourceMemories", None)
    original = getattr(memories, "recall", None)
    if getattr(original, "_labop_ephemeral", False):
        return
    if original is None or "ephemeral" not in inspect.signature(original).parameters:
        raise RuntimeError(
            "labop.kopfmemory: this kopf has no inventory.ResourceMemories.recall(ephemeral=...); "
            "labop needs the kopf version of its requirements lock"
        )

    async def recall(self: Any, raw_body: Any, **kwargs: Any) -> Any:
        return await original(self, raw_body, **{**kwargs, "ephemeral": True})

    recall._labop_ephemeral = True  # type: ignore[attr-defined]
    memories.recall = recall  # type: ignore[union-attr]
