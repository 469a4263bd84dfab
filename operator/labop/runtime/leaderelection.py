"""Leader election on a coordination.k8s.io/v1 Lease, asyncio-native, with client-go's semantics.

Why our own: kopf's peering pauses replicas by priority and trusts a peer for 60 s, and the
kubernetes client's ``leaderelection`` is thread-based with no release on shutdown. This is
client-go's ``leaderelection`` loop (``tryAcquireOrRenew``) on asyncio:

- a candidate tries every ``retry_period``; it takes the Lease when there is none (create; a
  409 means another created it first), when its holder is empty (released), or when a full
  ``lease_duration`` has passed on *our* monotonic clock since we last saw its holder or
  renewTime change (no comparison of clocks between machines, as in client-go);
- every update carries the resourceVersion we read (a 409 means someone else won);
- the leader renews every ``retry_period``; if no renewal succeeds for ``renew_deadline`` it
  stops leading (``on_stopped_leading``), as it does when it sees another holder;
- ``release`` clears holderIdentity and sets leaseDurationSeconds=1 (client-go's
  ReleaseOnCancel) so that a standby takes over at once after a graceful shutdown.

Fencing by time: ``fence()`` says whether a write may still be sent. A renewal that succeeded
was written after the moment we sent it, so nobody can take the Lease before that moment plus
``lease_duration`` (by their clocks' rates, which we assume close). ``fence`` allows writes until
that moment minus the margin (``lease_duration - renew_deadline``) and returns the time left
before the lease could expire, so a caller can cap a request's timeout with it. What it cannot
guarantee: that a request already received by the apiserver is not applied after that point.

The Lease's API calls go through ``LeaseClient`` (blocking client calls run in threads), so the
unit tests drive the election with an in-memory fake and a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from labkit.logs import log_event
from labop.runtime.clock import Clock, MonotonicClock

__all__ = [
    "ElectionConfig",
    "LeaderElector",
    "LeaseClient",
    "LeaseConflict",
    "LeaseLost",
    "LeaseRecord",
    "default_identity",
]

log = logging.getLogger("labop.runtime.leaderelection")


class LeaseConflict(Exception):
    """409: the Lease changed (update) or exists already (create): someone else won."""


class LeaseLost(Exception):
    """A write was refused by the fence: this replica does not hold the lease (any more)."""


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec fields client-go's LeaderElectionRecord holds, plus its resourceVersion."""

    holder: str = ""
    lease_duration: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    transitions: int = 0
    resource_version: str = ""


class LeaseClient(Protocol):
    """get/create/update of the one Lease; a missing Lease is None, a 409 is LeaseConflict."""

    async def get(self) -> LeaseRecord | None: ...
    async def create(self, record: LeaseRecord) -> LeaseRecord: ...
    async def update(self, record: LeaseRecord) -> LeaseRecord: ...


@dataclass(frozen=True)
class ElectionConfig:
    """client-go's defaults (LeaseDuration 15 s, RenewDeadline 10 s, RetryPeriod 2 s)."""

    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError("leader election needs lease_duration > renew_deadline > retry_period > 0")


def default_identity(env: dict[str, str] | None = None) -> str:
    """POD_NAME when set (the downward API), else the host name plus a random suffix."""
    pod = (env if env is not None else dict(os.environ)).get("POD_NAME", "")
    return pod or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def micro_time(now: datetime | None = None) -> str:
    """A MicroTime as the apiserver writes it (RFC 3339 with microseconds, UTC)."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Callback = Callable[[], Awaitable[None]]


class LeaderElector:
    """One replica's side of the election; ``run`` until cancelled or the lease is lost."""

    def __init__(
        self,
        config: ElectionConfig,
        client: LeaseClient,
        *,
        on_started_leading: Callback,
        on_stopped_leading: Callback,
        on_new_leader: Callable[[str], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self._client = client
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._on_new_leader = on_new_leader
        self._clock = clock or MonotonicClock()
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None  # when the last successful write was *sent*
        self._leader = ""  # the holder we last reported
        self.leading = False

    # --- what the rest of the operator asks ------------------------------------------------

    def fence(self) -> float:
        """Seconds left before the lease could expire; LeaseLost if writes must stop now."""
        if not self.leading or self._renewed_at is None:
            raise LeaseLost(f"{self.config.identity} does not hold lease {self.config.name}")
        now = self._clock.now()
        if now >= self._renewed_at + self.config.renew_deadline:
            raise LeaseLost(f"lease {self.config.name} not renewed within the renew deadline")
        return self._renewed_at + self.config.lease_duration - now

    def margin(self) -> float:
        """Seconds left before the lease could expire (0 if not held): the grace to stop in."""
        if self._renewed_at is None:
            return 0.0
        return max(0.0, self._renewed_at + self.config.lease_duration - self._clock.now())

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Acquire, lead until the lease is lost, then return (after ``on_stopped_leading``)."""
        await self._acquire()
        self.leading = True
        self._transition(leading=True)
        await self._on_started()
        await self._renew()  # cancelled while leading: release() is the caller's to call
        self.leading = False
        self._transition(leading=False)
        await self._on_stopped()

    async def _acquire(self) -> None:
        while not await self._try_acquire_or_renew():
            await self._clock.sleep(self.config.retry_period)

    async def _renew(self) -> None:
        while True:
            await self._clock.sleep(self.config.retry_period)
            deadline = (self._renewed_at or self._clock.now()) + self.config.renew_deadline
            while not await self._attempt_until(deadline):
                if self._observed is not None and self._held_by_other(self._observed):
                    return  # taken over: no point retrying until the deadline
                if self._clock.now() >= deadline:
                    return
                await self._clock.sleep(self.config.retry_period)

    async def _attempt_until(self, deadline: float) -> bool:
        """One renewal that gives up at ``deadline``: a request hanging on a dead connection
        (the client's own retries can take several timeouts) must not hold the leader past it."""
        try:
            async with asyncio.timeout(max(0.0, deadline - self._clock.now())):
                return await self._try_acquire_or_renew()
        except TimeoutError:
            log_event(log, "lease renewal timed out", logging.WARNING, lease=self.config.name)
            return False

    def _held_by_other(self, record: LeaseRecord) -> bool:
        return bool(record.holder) and record.holder != self.config.identity

    async def _try_acquire_or_renew(self) -> bool:
        sent = self._clock.now()
        try:
            return await self._attempt(sent)
        except LeaseConflict:
            return False
        except Exception as err:  # any failure of the API is one failed attempt
            log_event(log, "lease attempt failed", logging.WARNING, lease=self.config.name, error=str(err))
            return False

    async def _attempt(self, sent: float) -> bool:
        current = await self._client.get()
        mine = LeaseRecord(
            holder=self.config.identity,
            lease_duration=int(self.config.lease_duration),
            acquire_time=micro_time(),
            renew_time=micro_time(),
        )
        if current is None:
            self._succeeded(await self._client.create(mine), sent)
            return True
        self._observe(current)
        expires = self._observed_at + self.config.lease_duration
        if self._held_by_other(current) and self._clock.now() < expires:
            return False
        if current.holder == self.config.identity:
            mine = replace(mine, acquire_time=current.acquire_time, transitions=current.transitions)
        else:
            mine = replace(mine, transitions=current.transitions + 1)
        updated = await self._client.update(replace(mine, resource_version=current.resource_version))
        self._succeeded(updated, sent)
        return True

    def _observe(self, record: LeaseRecord) -> None:
        previous = self._observed
        if previous is None or (previous.holder, previous.renew_time) != (record.holder, record.renew_time):
            self._observed = record
            self._observed_at = self._clock.now()
        if record.holder and record.holder != self._leader:
            self._leader = record.holder
            if self._on_new_leader is not None:
                self._on_new_leader(record.holder)

    def _succeeded(self, record: LeaseRecord, sent: float) -> None:
        self._observed = record
        self._observed_at = self._clock.now()
        self._renewed_at = sent
        self._leader = record.holder

    def _transition(self, *, leading: bool) -> None:
        log_event(
            log,
            "became leader" if leading else "stopped leading",
            logging.INFO if leading else logging.WARNING,
            lease=self.config.name,
            identity=self.config.identity,
        )

    async def release(self) -> bool:
        """Give the lease up (holder "", leaseDurationSeconds 1) if we still hold it; call it
        once ``run`` was cancelled (else the next renewal takes the lease again)."""
        if self._observed is None or self._observed.holder != self.config.identity:
            return False
        self.leading = False
        try:
            return await self._release(self._observed)
        except Exception as err:  # a failed release only delays the hand-over
            log_event(log, "lease release failed", logging.WARNING, lease=self.config.name, error=str(err))
            return False

    async def _release(self, held: LeaseRecord) -> bool:
        try:
            await self._client.update(self._released(held))
        except LeaseConflict:
            # A race, not a rival: a renewal cancelled by the stop may still have reached the
            # apiserver (its request was on the wire), moving the resourceVersion on. Read again
            # and release once more if the lease is still ours; never someone else's.
            current = await self._client.get()
            if current is None or current.holder != self.config.identity:
                return False
            await self._client.update(self._released(current))
        log_event(log, "lease released", lease=self.config.name, identity=self.config.identity)
        return True

    @staticmethod
    def _released(held: LeaseRecord) -> LeaseRecord:
        return replace(held, holder="", lease_duration=1, renew_time=micro_time())


def record_of(lease: dict[str, Any]) -> LeaseRecord:
    """A LeaseRecord from a Lease as JSON (the client's ``sanitize_for_serialization``)."""
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        lease_duration=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=str(spec.get("acquireTime") or ""),
        renew_time=str(spec.get("renewTime") or ""),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
    )


def lease_body(name: str, namespace: str, record: LeaseRecord) -> dict[str, Any]:
    """The Lease object to create or update (with the resourceVersion precondition when known)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if record.resource_version:
        metadata["resourceVersion"] = record.resource_version
    spec: dict[str, Any] = {
        "holderIdentity": record.holder or None,
        "leaseDurationSeconds": record.lease_duration,
        "leaseTransitions": record.transitions,
        "renewTime": record.renew_time or None,
        "acquireTime": record.acquire_time or None,
    }
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {k: v for k, v in spec.items() if v is not None},
    }
