"""The kopf side: one-line handlers that turn watch events into keys.

Role: registers with kopf, on import, three event handlers; each hands its event to the
``Controller``, which puts the object into its kind's store (the read cache, see ``labop.cache``)
and its key into the queue, and nothing else (``event_priority``: the initial listing,
our own status writes and other updates that leave the spec as handled go in at low priority,
creations, deletions, spec changes and children's changes at normal, so new work is not stuck
behind a relist of every LabServer). No state-tracking handlers (on.create/update/...), so
kopf writes no annotations, finalizers or status of its own onto anybody's objects.
No ``@kopf.index``: kopf gates every handler on its indexes with per-object toggles that made a
relist quadratic; our stores and their sync (``labop.kopfsync``) do that job in linear time.
No daemon, timer or index either: kopf then needs no memory per object, and keeps none
(``labop.kopfmemory``).
Startup builds the ``Controller`` (settings from ``memo`` when started by ``python -m labop``,
else from the environment, since ``kopf run`` owns the command line), tunes kopf's settings, and
has our log lines follow kopf's ``--log-format`` (``follow_kopf_log_format``).
"""

from __future__ import annotations

import logging
import os
from typing import Any, cast

import kopf

from labkit.logs import with_fields
from labop.cache import DEPLOYMENTS, LABSERVERS, SERVICES, Cache
from labop.controller import Controller, new_registry
from labop.kopfmemory import forget_objects
from labop.kopfsync import observe_listings
from labop.kubeapi import KubeApi, KubeLeaseClient, load_client
from labop.memory import freeze_imports
from labop.naming import GROUP, PLURAL, VERSION
from labop.settings import OperatorSettings, election_namespace, from_env

SETTINGS_MEMO_KEY = "labop_settings"
KOPF_LIST_CHUNK = 500
KOPF_WORKERS = 256
KOPF_WORKER_IDLE_SECONDS = 0.1


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff base that keeps and builds nothing: we register no state-tracking handler.

    kopf builds an object's "essence" on every watch event (a deep copy of the whole body,
    managed fields included, then of its labels and annotations) and diffs it with the stored one,
    to detect the changes that on.create/update/field handlers react to. We have none of those
    (the unit tests check), so the copy and the diff were pure waste: about a tenth of the
    operator's CPU at 1,000 LabServers (bench/profiles/README.md). An empty essence, always equal
    to itself: no diff, no copy, nothing stored.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    # No per-event essence: only on.create/update/field handlers (none here) need one.
    kopf_settings.persistence.diffbase_storage = NoDiffBase()
    # No kopf peering (it pauses by priority): leader election, when on, is ours (a Lease).
    kopf_settings.peering.standalone = True
    kopf_settings.posting.level = logging.WARNING
    # Bounded watch requests: a stream that silently stalls is reopened (kopf #585, #957).
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330
    kopf_settings.networking.request_timeout = settings.api_timeout
    # Memory: how many parsed objects kopf holds at once. By default kopf lists a kind in one
    # request (every Deployment of the cluster parsed at once), starts a task per listed object
    # right away, each holding its object's whole parsed body, and keeps each task for 5 s after
    # its last event. A restart over 5,000 LabServers thus held all 15,000 bodies at once, and
    # the heap keeps such a high-water mark (RSS stayed at ~70 KB per LabServer for 6 KB of live
    # data: BENCHMARKS.md). So: pages of 500 (client-go's pager's), at most KOPF_WORKERS tasks
    # at once, and a task goes as soon as its events are handled (our handler is done with an
    # event at once: the store keeps a compact copy; a later event starts a new task). kopf reads
    # on while all tasks are busy (the events of objects without a task wait, parsed, in its own
    # queues, without bound): that is why our handlers never wait (``Controller.enqueue``).
    kopf_settings.watching.chunk_size = KOPF_LIST_CHUNK
    kopf_settings.queueing.worker_limit = KOPF_WORKERS
    kopf_settings.queueing.idle_timeout = KOPF_WORKER_IDLE_SECONDS
    # kopf logs every event handler's success at INFO: one line per watch event, all noise here.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def follow_kopf_log_format() -> bool:
    """Write our lines' fields in the format kopf was told (``kopf run --log-format``): ``key=value``
    after the message in plain and full, JSON fields in json. False if kopf set up no handler.

    kopf's ``configure`` (run by its CLI before it loads main.py, and by ``python -m labop``) puts one
    handler of its own class ``_KopfStreamHandler`` on the root logger, with the formatter of the
    chosen format; kopf finds it again by that class, and so do we. kopf's json formatter is a
    python-json-logger formatter (its class or a base comes from that package, kopf's dependency).
    """
    found = False
    for handler in logging.getLogger().handlers:
        if type(handler).__name__ != "_KopfStreamHandler" or handler.formatter is None:
            continue
        formatter = handler.formatter
        json_lines = any(cls.__module__.startswith("pythonjsonlogger") for cls in type(formatter).__mro__)
        with_fields(handler, json_lines=json_lines, refkey=getattr(formatter, "_refkey", None))
        found = True
    return found


def _controller(memo: kopf.Memo) -> Controller:
    return cast(Controller, memo.controller)  # set by start_controller before any event handler runs


# PERMANENT: bad settings or a port in use will not fix themselves; kopf stops instead of retrying.
@kopf.on.startup(errors=kopf.ErrorsMode.PERMANENT)
async def start_controller(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    follow_kopf_log_format()
    ours: OperatorSettings = memo.get(SETTINGS_MEMO_KEY) or from_env(os.environ)
    configure_kopf(settings, ours)
    # With leader election no silent resend by urllib3: every write passes the fence (kubeapi).
    client = load_client(retries=0) if ours.leader_elect else load_client()
    registry = new_registry()  # the controller's /metrics; the writes count their requests there too
    api = KubeApi(
        client,
        field_manager=ours.field_manager,
        connections=max(4, 2 * ours.workers),
        timeout=ours.api_timeout,
        fence=(lambda: _controller(memo).fence()) if ours.leader_elect else None,
        registry=registry,
    )
    lease_client = None
    if ours.leader_elect:
        lease_client = KubeLeaseClient(
            client, ours.leader_election_id, election_namespace(ours), timeout=ours.renew_deadline
        )
    cache = Cache()
    observe_listings(cache.sync, {LABSERVERS, DEPLOYMENTS, SERVICES})  # before kopf's watchers start
    forget_objects()  # kopf keeps no per-object memory: we use none of it (labop.kopfmemory)
    memo.controller = Controller(ours, cache, api, registry, lease_client=lease_client)
    await memo.controller.start()
    freeze_imports()  # everything is imported and built: see labop.memory


@kopf.on.cleanup()
async def stop_controller(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        await controller.stop()


# ``type``: the watch event's, None for an object of kopf's initial listing. The handlers are
# ``async def`` on purpose: kopf runs a plain ``def`` handler in its thread pool (a hop to a
# thread and back, a copied context and a shielded task per watch event).
@kopf.on.event(GROUP, VERSION, PLURAL)
async def labserver_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _controller(memo).labserver_event(type, body)


@kopf.on.event("apps", "v1", "deployments")
async def deployment_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _controller(memo).deployment_event(type, body)


@kopf.on.event("", "v1", "services")
async def service_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _controller(memo).service_event(type, body)
