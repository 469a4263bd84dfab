"""The worker pool: N tasks that take keys from the work queue and run the reconciler on them.

Why a pool of tasks over one queue, not a task per event: a bounded number of reconciles at
once, never two on one key, and retries with backoff, all counted under controller-runtime's
metric names. The reconcile contract (`Result`, the errors) is in `reconcile`.

Each worker runs the loop of client-go's sample-controller, in small steps:
`_run_worker` (loop) -> `_process_next_item` (get ... done) -> `_reconcile_handler` (call the
reconciler, then act on its outcome, as controller-runtime does):

=======================================  =====================================================
outcome                                  what the queue is told
=======================================  =====================================================
returns None or Result()                 forget (reset the key's backoff)
returns Result(requeue_after=s), s > 0   forget, then add_after(key, s)
returns Result(requeue=True)             add_rate_limited(key): again soon, backing off if it
                                         persists (e.g. a 409); not an error
raises PermanentError                    forget; not retried; counted as an error; WARNING
raises TransientError                    add_rate_limited(key); counted as an error; WARNING,
                                         one line, no traceback (an answer we understand)
raises anything else (a bug)             add_rate_limited(key); counted as an error; ERROR
                                         with the traceback
returns something else (a bug)           as "anything else", also counted as a panic
=======================================  =====================================================

A worker never dies of a reconcile failure. `done(key)` always follows `get`, so a key added
while it was being reconciled is reconciled again afterwards, never by two workers at once.
Every requeue above (add_after, add_rate_limited) keeps the priority the key was handed out
with, as controller-runtime's priority queue does: a failing key of a resync retries behind new
work, a failing new object keeps its place ahead of the backlog (see `workqueue`).

Logs go through `labkit.logs`: each reconcile runs inside a log context of `controller`,
`namespace`, `name` and a short random `reconcile_id`, so every line the reconciler writes
during that pass (and the outcome's line here) names them.
"""

from __future__ import annotations

import asyncio
import logging

from labkit.logs import log_context, log_event, new_reconcile_id
from labop.runtime.metrics import ControllerMetrics
from labop.runtime.reconcile import (
    BadReconcileResult,
    Key,
    PermanentError,
    ReconcileFunc,
    Result,
    TransientError,
)
from labop.runtime.workqueue import Priority, QueueShutDown, WorkQueue

__all__ = ["WorkerPool"]


class WorkerPool:
    """A fixed pool of worker tasks draining one `WorkQueue` into one reconciler."""

    def __init__(
        self,
        queue: WorkQueue[Key],
        reconcile: ReconcileFunc,
        *,
        workers: int = 2,
        name: str = "labserver",
        metrics: ControllerMetrics | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._queue = queue
        self._reconcile = reconcile
        self._workers = workers
        self._name = name
        self._metrics = metrics
        self._logger = logger or logging.getLogger(__name__)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._busy: dict[int, Key] = {}  # worker index -> key it reconciles right now
        self._stopping = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def running(self) -> bool:
        """Started, not asked to stop, and at least one worker alive."""
        return not self._stopping and any(not task.done() for task in self._tasks.values())

    @property
    def active_workers(self) -> int:
        """Workers reconciling right now (the rest wait for a key)."""
        return len(self._busy)

    @property
    def in_flight(self) -> dict[int, Key]:
        """A copy of worker index -> key being reconciled."""
        return dict(self._busy)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the worker tasks."""
        if self._tasks:
            raise RuntimeError(f"worker pool {self._name} was already started")
        if self._metrics is not None:
            self._metrics.set_max_concurrent(self._workers)
        loop = asyncio.get_running_loop()
        for index in range(self._workers):
            task = loop.create_task(self._run_worker(index), name=f"{self._name}-worker-{index}")
            task.add_done_callback(self._worker_ended)
            self._tasks[index] = task
        self._log(logging.INFO, "worker pool started", workers=self._workers)

    async def stop(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - the agreed API; a grace period
        """Take no new keys, let reconciles in flight finish within `timeout`, then cancel them.

        It shuts the queue down: adds are ignored from now on and producers blocked in `add`
        return. Keys still waiting are not reconciled; a restarted operator lists them again.
        """
        if not self._tasks:
            return
        if self._stopping:
            # A second caller waits for the same workers, with its own timeout.
            await self._wait_for_workers(set(self._tasks.values()), timeout)
            return
        self._stopping = True
        self._queue.shutdown()
        for index, task in self._tasks.items():
            if index not in self._busy:
                task.cancel()  # idle in get(): cancelling there loses no key (see WorkQueue.get)
        try:
            pending = await self._wait_for_workers(set(self._tasks.values()), timeout)
            if pending:
                await self._cut(pending, grace=timeout)
        except asyncio.CancelledError:
            for task in self._tasks.values():  # whoever stops us will not wait: leave no orphans
                task.cancel()
            raise
        self._log(logging.INFO, "worker pool stopped")

    async def _cut(self, pending: set[asyncio.Task[None]], *, grace: float) -> None:
        for index, key in sorted(self._busy.items()):
            namespace, name = key
            self._log(
                logging.WARNING,
                "reconcile cut by shutdown",
                namespace=namespace or None,
                name=name,
                worker=index,
                grace=grace,
            )
        for task in pending:
            task.cancel()
        # A reconcile that swallows CancelledError still ends its worker after it returns;
        # bound the wait anyway so that stop() itself cannot hang.
        for task in await self._wait_for_workers(pending, grace):
            self._log(logging.ERROR, "worker ignored cancellation", task=task.get_name())

    async def _wait_for_workers(
        self, tasks: set[asyncio.Task[None]], seconds: float
    ) -> set[asyncio.Task[None]]:
        """Wait until `tasks` end or `seconds` pass on the queue's clock; return those left."""
        remaining = {task for task in tasks if not task.done()}
        if not remaining:
            return remaining
        clock = self._queue.clock
        all_ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def ended(task: asyncio.Task[None]) -> None:
            remaining.discard(task)
            if not remaining and not all_ended.done():
                all_ended.set_result(None)

        for task in remaining:
            task.add_done_callback(ended)
        await clock.wait_until(all_ended, clock.now() + seconds)
        for task in tasks:
            task.remove_done_callback(ended)
        return {task for task in tasks if not task.done()}

    def _worker_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Only a bug in this module gets here: reconcile failures are caught below.
            self._log(logging.ERROR, "worker crashed", exc_info=task.exception(), task=task.get_name())

    # ----------------------------------------------------------------- the worker loop

    async def _run_worker(self, index: int) -> None:
        while await self._process_next_item(index):
            pass

    async def _process_next_item(self, index: int) -> bool:
        """Take one key, reconcile it, tell the queue; False when the worker should end."""
        try:
            key, priority = await self._queue.get_with_priority()
        except QueueShutDown:
            return False
        # No await between get() and here: stop() sees this worker as busy, not idle.
        self._busy[index] = key
        if self._metrics is not None:
            self._metrics.worker_busy()
        try:
            namespace, name = key
            with log_context(
                controller=self._name, namespace=namespace or None, name=name, reconcile_id=new_reconcile_id()
            ):
                await self._reconcile_handler(key, priority)
        finally:
            self._queue.done(key)
            del self._busy[index]
            if self._metrics is not None:
                self._metrics.worker_idle()
        return not self._stopping

    async def _reconcile_handler(self, key: Key, priority: Priority) -> None:
        started = self._queue.clock.now()
        try:
            result = _checked(await self._reconcile(key))
        except PermanentError as error:
            self._on_permanent_error(key, error, started)
        except TransientError as error:
            self._on_error(key, priority, error, started, panic=False, level=logging.WARNING)
        except asyncio.CancelledError as error:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being stopped: not the reconciler's failure
            self._on_error(key, priority, error, started, panic=True)  # a stray one, raised by the reconciler
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:  # a buggy reconcile must not kill the worker
            panic = isinstance(error, BadReconcileResult) or not isinstance(error, Exception)
            self._on_error(key, priority, error, started, panic=panic)
        else:
            self._on_success(key, priority, result, started)

    # ----------------------------------------------------------------- outcomes

    def _on_success(self, key: Key, priority: Priority, result: Result, started: float) -> None:
        requeue_after = result.requeue_after or 0.0
        if result.requeue and not requeue_after:
            delay = self._queue.add_rate_limited(key, priority)
            self._observe("requeue", started)
            self._log(logging.DEBUG, "requeued", requeue_in=delay)
            return
        self._queue.forget(key)
        if requeue_after > 0:
            self._queue.add_after(key, requeue_after, priority)
            self._observe("requeue_after", started)
            self._log(logging.DEBUG, "reconciled", requeue_after=requeue_after)
        else:
            self._observe("success", started)
            self._log(logging.DEBUG, "reconciled")

    def _on_permanent_error(self, key: Key, error: PermanentError, started: float) -> None:
        self._queue.forget(key)
        if self._metrics is not None:
            self._metrics.error(terminal=True)
        self._observe("error", started)
        # The owner of the object was told (status, Event); the operator's admin has nothing to do.
        self._log(logging.WARNING, "reconcile failed permanently", error=_describe(error), retry="no")

    def _on_error(
        self,
        key: Key,
        priority: Priority,
        error: BaseException,
        started: float,
        *,
        panic: bool,
        level: int = logging.ERROR,
    ) -> None:
        delay = self._queue.add_rate_limited(key, priority)
        if self._metrics is not None:
            self._metrics.error()
            if panic:
                self._metrics.panic()
        self._observe("error", started)
        fields: dict[str, object] = {"error": _describe(error)}
        if delay is None:
            fields["retry"] = "no-queue-shut-down"
        else:
            fields["requeue_in"] = delay
            fields["requeues"] = self._queue.num_requeues(key)
        # A traceback only where it helps: a failure we did not foresee (a bug).
        traceback = error if level >= logging.ERROR else None
        self._log(level, "reconcile failed", exc_info=traceback, **fields)

    def _observe(self, result: str, started: float) -> None:
        if self._metrics is not None:
            self._metrics.reconciled(result, self._queue.clock.now() - started)

    def _log(
        self, level: int, message: str, *, exc_info: BaseException | None = None, **fields: object
    ) -> None:
        """One line; inside a reconcile the context names the controller and the object already."""
        log_event(
            self._logger, message, level, exc_info=exc_info, stacklevel=2, controller=self._name, **fields
        )


def _checked(result: object) -> Result:
    if result is None:
        return Result()
    if not isinstance(result, Result):
        raise BadReconcileResult(f"reconcile returned {type(result).__name__}, expected Result or None")
    return result


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
