"""``reconcile(key)``: level-triggered, from whatever the cache holds now to the desired state.

Role: one pass for one LabServer key, in small named steps: read it from the cache (gone or
being deleted: nothing to do, the garbage collector removes the children); parse the spec (bad:
permanent error, reported in status, not retried); look at same-named children that are not
ours (an earlier LabServer's of the same name: wait for the garbage collector; anyone else's:
ChildConflict, left alone); server-side apply the Deployment and the Service built by the pure
builders (a deleted child comes back, a hand-edited owned field is restored); compute the status
from what the apply returned and write it only when it changed (a pass whose apply changed the
Deployment leaves it to the next pass, which that apply's watch event brings: see
``_status_waits_for_the_deployment_controller``); post Events on transitions.
Each write says so in the log: a child's apply at INFO with why it was due (``out_of_date``),
a status write at DEBUG; a write nobody expected is then explained by the log alone.

API failures are handled by their verdict in ``apierrors`` (the table users read in the README):
gone or namespace terminating ends the pass quietly, a conflict requeues at once, our own object
refused is InvalidSpec (permanent), the rest is a ``TransientError`` retried with backoff and
shown as Degraded=ReconcileError. Anything else escaping from here is a bug.

Status write: server-side apply of the /status subresource under a field manager of its own
(``k8s-lab-status``), with the cached LabServer's resourceVersion as a precondition. Why both:
- The status is computed from the cached object (a condition keeps its lastTransitionTime
  while its status holds; an Event is posted when Ready changes), and the cache learns of our
  own writes only when their watch events arrive. The precondition makes the apiserver refuse
  (409) a status computed from a cache that lags behind the stored object, ours or anybody's
  write; a write that passes was computed from exactly the stored status, so times and Events
  follow real transitions with no memory of our own writes in here. A refused write needs no
  requeue: the newer version that refused it comes with a watch event, which enqueues the key
  (sample-controller's update with resourceVersion, controller-runtime's conflicts).
- Apply rather than update: we send only the fields we own (no read-modify-write of the whole
  object), a field we stop sending (``endpoints`` once the Service is gone) is removed, and
  conditions are a list-map keyed by type (the CRD says so), so a condition another controller
  adds is kept by the apiserver, not by us (controller-rs writes status this way).
The cost is one refused request when a pass runs on a stale cache and its status differs;
``make bench-operator`` counts them (BENCHMARKS.md, "Operator end to end").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from labkit.logs import log_event
from labop import reasons
from labop.apierrors import ApiError, Verdict, classify
from labop.builders import build_deployment, build_service
from labop.cache import Cache, Key, child_entry
from labop.kubeapi import Applied, KubeApiLike
from labop.naming import DESIRED_HASH, FIELD_MANAGER, is_controlled_by
from labop.ownedfields import applied_fingerprint
from labop.recorder import NORMAL, WARNING, EventRecorder
from labop.runtime import PermanentError, Result, TransientError
from labop.spec import LabServerSpec, parse_spec
from labop.status import TRUE, Problem, compute_status, foreign_children_problem

log = logging.getLogger("labop.reconciler")
Children = dict[str, dict[str, Any] | None]
# How soon to look again while an earlier incarnation's children wait for the garbage collector
# (their deletion events requeue the key too; this is the safety net for a lagging cache).
CLEANUP_RECHECK_SECONDS = 1.0
# How long our own apply may stay ahead of the cache before the cache is believed again.
PENDING_SECONDS = 10.0
PENDING = timedelta(seconds=PENDING_SECONDS)
OUR_CONDITIONS = frozenset({reasons.READY, reasons.PROGRESSING, reasons.DEGRADED})


def _now() -> datetime:
    return datetime.now(UTC)


def _condition(status: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any]:
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


@dataclass(frozen=True, slots=True)
class _Pending:
    """Our last apply of one child, until the cache shows it (see ``_apply_if_changed``)."""

    desired_hash: str
    seen_version: str | None  # the child's resourceVersion in the cache when we applied, None: absent
    # The applied child as the cache will hold it, packed as the cache packs it: an entry lives
    # until the key's next pass, which in a burst of new LabServers comes minutes later, and
    # thousands of parsed dicts held that long kept the allocator's arenas from emptying.
    entry: bytes
    until: datetime


def _version(child: Mapping[str, Any] | None) -> str | None:
    return None if child is None else (child.get("metadata") or {}).get("resourceVersion")


def up_to_date(cached: Mapping[str, Any], desired: Mapping[str, Any], manager: str) -> bool:
    """Whether applying ``desired`` as ``manager`` would change nothing in the child that the
    cache entry ``cached`` describes (why this suffices: ``Reconciler._apply_if_changed``)."""
    return out_of_date(cached, desired, manager) is None


def out_of_date(cached: Mapping[str, Any] | None, desired: Mapping[str, Any], manager: str) -> str | None:
    """Why an apply of ``desired`` is due, as the log line of the apply says it; None: it is not.

    "absent": no such child in the cache; "desired changed": its desired-hash annotation is not
    ``desired``'s (another spec, another operator version, or none); "no apply entry": our field
    manager has no Apply entry in its managedFields; "owned fields changed": that entry's set
    differs from what applying ``desired`` owns (another manager took or removed a field).
    """
    if cached is None:
        return "absent"
    wanted = desired["metadata"]["annotations"][DESIRED_HASH]
    meta = cached.get("metadata") or {}
    if (meta.get("annotations") or {}).get(DESIRED_HASH) != wanted:
        return "desired changed"
    owned = (cached.get("fields") or {}).get(manager)
    if owned is None:
        return "no apply entry"
    return None if owned == applied_fingerprint(desired) else "owned fields changed"


def _status_waits_for_the_deployment_controller(ls: Mapping[str, Any], changed: set[str]) -> bool:
    """Whether this pass leaves the status to the next one: its apply changed the Deployment,
    and the stored status reports no problem.

    Why: right after our apply, the Deployment's controller has not seen the new generation, so
    the status could only say "waiting for the Deployment controller", which the Created Event
    (or the user's own edit) already says, and which is out of date moments later. The watch
    event of the version the apply stored always brings a next pass (a child's event is normal
    priority: ``event_priority``; a new leader resyncs every key), and that pass writes what the
    Deployment controller reported: milliseconds later when the operator is idle; under load,
    after the queue wait, by when the rollout has often finished, so the status goes straight
    to Ready and one write per LabServer is saved (1,000 created at once: 2 status writes per
    LabServer became 1, and the apiserver's CPU fell by about a sixth; BENCHMARKS.md). A stored
    problem (Degraded: an invalid spec now fixed, an error now passed) is cleared at once
    instead of standing through that wait.
    """
    return "Deployment" in changed and _condition(ls.get("status"), reasons.DEGRADED).get("status") != TRUE


def _reset_owned_lists(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSON patch operations that set the keyed lists of ``obj`` to exactly ours."""
    if obj["kind"] == "Service":
        return [{"op": "replace", "path": "/spec/ports", "value": obj["spec"]["ports"]}]
    containers = obj["spec"]["template"]["spec"]["containers"]
    return [{"op": "replace", "path": "/spec/template/spec/containers", "value": containers}]


def _without_nones(status: Mapping[str, Any]) -> dict[str, Any]:
    # Left out of the apply, a field we own is removed, so the stored status never holds a null.
    return {k: v for k, v in status.items() if v is not None}


def _ours(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status fields we apply: every non-null one, and only our own conditions (another
    controller's stay, entries of a list-map keyed by type that we do not own)."""
    applied = _without_nones(status)
    applied["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") in OUR_CONDITIONS]
    return applied


class Reconciler:
    def __init__(
        self,
        cache: Cache,
        api: KubeApiLike,
        recorder: EventRecorder,
        *,
        default_image: str,
        field_manager: str = FIELD_MANAGER,
        now: Callable[[], datetime] = _now,
    ) -> None:
        self._cache = cache
        self._api = api
        self._recorder = recorder
        self._default_image = default_image
        self._manager = field_manager
        self._now = now
        # (kind, key) -> our apply the cache does not show yet: see _apply_if_changed. Bounded:
        # an entry goes when the cache moves, when it expires, or with its LabServer.
        self._pending: dict[tuple[str, Key], _Pending] = {}

    async def reconcile(self, key: Key) -> Result | None:
        ls = self._cache.labserver(key)
        if ls is None or ls["metadata"].get("deletionTimestamp"):
            self._forget(key)
            return None  # gone: ownerReferences let the garbage collector take the children
        spec = await self._parse(ls)
        try:
            return await self._sync(key, ls, spec)
        except ApiError as err:
            return await self._on_api_error(ls, err)

    async def _sync(self, key: Key, ls: dict[str, Any], spec: LabServerSpec) -> Result | None:
        cached: Children = {"Deployment": self._cache.deployment(key), "Service": self._cache.service(key)}
        if waiting := await self._check_foreign_children(ls, cached):
            return waiting
        children, changed = await self._apply_children(key, ls, spec, cached)
        if _status_waits_for_the_deployment_controller(ls, changed):
            return self._recheck_if_created_unseen(key, cached, changed)
        if (written := await self._write_status(ls, children, problem=None)) is not None:
            await self._record_ready_transition(ls, ls.get("status") or {}, written)
        return self._recheck_if_created_unseen(key, cached, changed)

    def _recheck_if_created_unseen(self, key: Key, cached: Children, changed: set[str]) -> Result | None:
        """A look again at expiry when this pass trusted our apply of a child the cache has not
        shown at all yet: were it deleted before the cache caught up, both its events could pass
        before this key's next pass, which would find the cache as before (absent) and trust the
        apply again; the requeue makes the expired entry give way to the cache.

        A child absent from the cache that this pass did not apply (``changed``: an apply over
        an absent child always stores a new version) is one it trusted a pending apply for."""
        unseen = [
            pending
            for kind in cached
            if cached[kind] is None
            and kind not in changed
            and (pending := self._pending.get((kind, key))) is not None
        ]
        if not unseen:
            return None
        return Result(requeue_after=max((p.until - self._now()).total_seconds() for p in unseen))

    async def _on_api_error(self, ls: dict[str, Any], err: ApiError) -> Result | None:
        verdict = classify(err)
        if verdict is Verdict.GONE:
            # The LabServer or its namespace is going away (404/410, NamespaceTerminating).
            log_event(log, "stopped, gone", logging.DEBUG, error=str(err))
            return None
        if verdict is Verdict.CONFLICT:
            # Optimistic concurrency: routine; again at once, from a fresher cache.
            log_event(log, "conflict, requeued", logging.DEBUG, error=str(err))
            return Result(requeue=True)
        # Temporary (429, 5xx, a 403, a webhook's refusal, no answer): the workers retry with
        # backoff; meanwhile the user sees why in the status instead of a stale Ready=True.
        await self._report_temporary(ls, err)
        raise TransientError(str(err)) from err

    # --- steps --------------------------------------------------------------------------

    def _forget(self, key: Key) -> None:
        for kind in ("Deployment", "Service"):
            self._pending.pop((kind, key), None)

    async def _parse(self, ls: dict[str, Any]) -> LabServerSpec:
        try:
            return parse_spec(ls.get("spec"), default_image=self._default_image)
        except PermanentError as err:
            await self._report_problem(ls, Problem(reasons.INVALID_SPEC, str(err)))
            raise

    async def _check_foreign_children(self, ls: dict[str, Any], cached: Children) -> Result | None:
        """Same-named children we do not control: wait for an earlier incarnation's, refuse others'."""
        foreign = [
            (kind, child) for kind, child in cached.items() if child and not is_controlled_by(child, ls)
        ]
        if not foreign:
            return None
        # Race: a stranger created after the cache last saw the name would be adopted by the
        # apply if it has no controller; with one, the apiserver refuses our apply.
        problem = foreign_children_problem(ls, foreign)
        await self._report_problem(ls, problem)
        if problem.waiting:
            return Result(requeue_after=CLEANUP_RECHECK_SECONDS)
        raise PermanentError(problem.message)

    async def _apply_children(
        self, key: Key, ls: dict[str, Any], spec: LabServerSpec, cached: Children
    ) -> tuple[Children, set[str]]:
        """Each child as it is now, and the kinds whose apply stored a new version (so a watch
        event of theirs is sure to follow: an apply that changes nothing moves no version)."""
        desired = {"Deployment": build_deployment(ls, spec), "Service": build_service(ls, spec)}
        children: Children = {}
        changed: set[str] = set()
        created: list[str] = []
        for kind, obj in desired.items():
            children[kind], applied = await self._apply_if_changed(key, ls, obj, cached[kind])
            if applied is not None and _version(applied.obj) != _version(cached[kind]):
                changed.add(kind)
            if applied is not None and applied.created:
                created.append(f"Created {kind} {key[1]}")
        if created:  # one Event for the pass, not one per child: a write each (reasons.py)
            await self._recorder.record(ls, NORMAL, reasons.EVENT_CREATED, "; ".join(created))
        return children, changed

    async def _apply_if_changed(
        self, key: Key, ls: dict[str, Any], desired: dict[str, Any], cached: dict[str, Any] | None
    ) -> tuple[dict[str, Any], Applied | None]:
        """Apply ``desired`` unless the cached child shows that the apply would change nothing;
        the child as it is now, and the apply if this call made one.

        Skipped when the child (already known to be controlled by ``ls``, by uid) carries the
        desired-hash annotation of ``desired`` and our field manager's Apply entry in its
        managedFields owns exactly the fields an apply of ``desired`` owns (``ownedfields``).
        Why that suffices, with no memory of earlier applies (so a restart costs nothing):
        the annotation says our last apply sent exactly ``desired``; afterwards a field we own
        can only change value if another manager takes it (an update or a forced apply moves
        ownership) or removes it (it leaves our set), and either changes our set. An edit of a
        field we do not own (the Deployment controller's revision annotation, a status, a
        label of someone else's) leaves the set alone and needs no apply. Hence no periodic
        re-apply either: the resync re-runs this comparison, which catches anything missed.

        The cache learns of our own apply only when its watch event arrives; until then
        (``_Pending``: the cache still shows the version we applied over) the applied object
        stands in, so that a reconcile in between makes no second, no-op apply.
        """
        kind = desired["kind"]
        wanted = desired["metadata"]["annotations"][DESIRED_HASH]
        why = out_of_date(cached, desired, self._manager)
        if cached is not None and why is None:
            self._pending.pop((kind, key), None)
            return cached, None
        if (pending := self._still_pending(kind, key, cached, wanted)) is not None:
            return pending, None
        applied = await self._apply(ls, desired, existed=cached is not None)
        self._pending[(kind, key)] = _Pending(
            wanted, _version(cached), child_entry(applied.obj), self._now() + PENDING
        )
        # Every write of a child says which and why: a write nobody expected (after a restart,
        # on a resync) is then explained by the log alone. Rare: only when the child differs.
        log_event(
            log,
            "child applied",
            kind=kind,
            reason=why,
            created=applied.created,
            cached_version=_version(cached) or "-",
            version=_version(applied.obj) or "-",
        )
        return applied.obj, applied

    def _still_pending(
        self, kind: str, key: Key, cached: Mapping[str, Any] | None, wanted: str
    ) -> dict[str, Any] | None:
        """Our applied child if the cache has not seen our apply yet, else None (entry dropped).

        Race: "not seen yet" is judged by the cache still holding the very version we applied
        over (resourceVersions are only compared for equality); once it moved, to our version or
        past it, the cache is the truth again. An entry also expires, bounding a wrong guess.
        """
        pending = self._pending.get((kind, key))
        if pending is None:
            return None
        fresh = self._now() < pending.until
        if fresh and pending.desired_hash == wanted and pending.seen_version == _version(cached):
            entry: dict[str, Any] = json.loads(pending.entry)
            return entry
        del self._pending[(kind, key)]
        return None

    async def _apply(self, ls: dict[str, Any], obj: dict[str, Any], *, existed: bool) -> Applied:
        try:
            return await self._api.apply(obj)
        except ApiError as err:
            if classify(err) is not Verdict.INVALID:
                raise
            if not (existed and err.status == 422):
                await self._refused(ls, obj, err)
            refusal = err
        # Server-side apply merges list entries by key (a Service port by port number, a
        # container by name): a hand edit that changed a key leaves a foreign entry beside ours,
        # and the merged object is invalid (e.g. two ports named "api"). Put our list back
        # whole, then apply again.
        log_event(log, "apply refused, resetting owned list", kind=obj["kind"], error=refusal.reason)
        try:
            await self._api.json_patch(obj, _reset_owned_lists(obj))
            return await self._api.apply(obj)
        except ApiError as err:
            if classify(err) is not Verdict.INVALID:
                raise
            await self._refused(ls, obj, err)

    async def _refused(self, ls: dict[str, Any], obj: dict[str, Any], err: ApiError) -> NoReturn:
        """The apiserver refused the object we built: only a spec change helps (InvalidSpec)."""
        problem = Problem(reasons.INVALID_SPEC, f"{obj['kind']} rejected by the API server: {err.reason}")
        await self._report_problem(ls, problem)
        raise PermanentError(problem.message) from err

    async def _write_status(
        self, ls: dict[str, Any], children: Children, *, problem: Problem | None
    ) -> dict[str, Any] | None:
        """Apply the status computed from ``ls`` if it changed; the status written, else None.

        None also when the precondition failed (409): ``ls`` was not the stored LabServer any
        more, so nothing computed from it may be written or reported; the watch event of the
        newer version brings the key back.
        """
        old = ls.get("status") or {}
        status = compute_status(
            ls,
            deployment=children.get("Deployment"),
            service=children.get("Service"),
            problem=problem,
            now=self._now(),
        )
        if _without_nones(status) == _without_nones(old):
            return None  # nothing new: no write, so no event loop of our own status updates
        try:
            await self._api.apply_status(ls, _ours(status))
        except ApiError as err:
            if classify(err) is not Verdict.CONFLICT:
                raise
            meta = ls["metadata"]
            log.debug(
                "status conflict, cache behind key=%s/%s error=%s", meta["namespace"], meta["name"], err
            )
            return None
        ready = _condition(status, reasons.READY)
        # DEBUG: a status write is routine (every step of a rollout); with --verbose the log
        # names each one, e.g. to explain a write nobody expected.
        log_event(log, "status written", logging.DEBUG, ready=ready.get("status"), reason=ready.get("reason"))
        return status

    async def _record_ready_transition(
        self, ls: dict[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> None:
        before, after = _condition(old, reasons.READY), _condition(new, reasons.READY)
        if before.get("status") == after.get("status"):
            return
        log_event(log, "ready changed", ready=after.get("status"), reason=after.get("reason"))
        if after.get("status") == "True":
            await self._recorder.record(ls, NORMAL, reasons.EVENT_READY, str(after.get("message", "Ready")))
        elif before.get("status") == "True":
            await self._recorder.record(ls, WARNING, reasons.EVENT_NOT_READY, str(after.get("message", "")))

    async def _report_temporary(self, ls: dict[str, Any], err: ApiError) -> None:
        problem = Problem(reasons.RECONCILE_ERROR, f"API request failed, retrying: {err}", retryable=True)
        try:
            await self._report_problem(ls, problem)
        except ApiError as also:  # the API may refuse this write too; the original error counts
            log_event(log, "status not written", logging.WARNING, error=str(also))

    async def _report_problem(self, ls: dict[str, Any], problem: Problem) -> None:
        """Status and a Warning Event, once per distinct problem (not on every retry).

        The Event follows a status write that passed its precondition, so "distinct" is judged
        against the stored status, never against a cache lagging behind our own last report.
        """
        known = _condition(ls.get("status"), reasons.DEGRADED)
        news = known.get("reason") != problem.reason or known.get("message") != problem.message
        key = (ls["metadata"]["namespace"], ls["metadata"]["name"])
        children: Children = {"Deployment": self._cache.deployment(key), "Service": self._cache.service(key)}
        warn = news and not problem.waiting  # a wait for the garbage collector is nobody's problem
        try:
            written = await self._write_status(ls, children, problem=problem)
        except ApiError as err:
            if classify(err) is Verdict.GONE:
                return
            if warn:  # the status could not say it: the Event still does, as before the write
                await self._recorder.record(ls, WARNING, problem.reason, problem.message)
            raise
        if written is None:
            return
        if warn:
            await self._recorder.record(ls, WARNING, problem.reason, problem.message)
        await self._record_ready_transition(ls, ls.get("status") or {}, written)
