"""A small controller runtime for kopf operators: controller-runtime's discipline on asyncio.

Why a package of its own: nothing in it is about LabServers, so another controller (or another
operator) can use it, and the LabServer code depends on it, never the other way round.

- `reconcile`: the contract (`Key`, `Result`, `PermanentError`, `TransientError`);
- `workqueue`, `ratelimit`, `clock`: client-go's work queue semantics, bounded, with
  controller-runtime's two priorities (new work first);
- `workers`: the worker pool and its error policy; `metrics`: controller-runtime's series;
- `controller`: `ControllerBuilder(...).for_(...).owns(...).complete(reconcile)`;
- `leaderelection`: client-go's Lease election on asyncio, and the time fence for writes;
- `store`: the informer's side: a compact store per kind, and `ListingSync` (WaitForCacheSync).

kopf stays the event source: its handlers put each watch event into its kind's `Store`, then
turn it into a key (`Controller.enqueue`) or hand the owned object over
(`Controller.enqueue_owner`), at the priority `event_priority` gives the event.
"""

from labop.runtime.controller import Controller, ControllerBuilder, GroupKind, Options, event_priority, key_of
from labop.runtime.reconcile import Key, PermanentError, ReconcileFunc, Result, TransientError
from labop.runtime.workqueue import LOW, NORMAL, Priority

__all__ = [
    "LOW",
    "NORMAL",
    "Controller",
    "ControllerBuilder",
    "GroupKind",
    "Key",
    "Options",
    "PermanentError",
    "Priority",
    "ReconcileFunc",
    "Result",
    "TransientError",
    "event_priority",
    "key_of",
]
