"""labop.reconciler: one level-triggered pass, against a fake API and a cache over dicts.

The fake API records every write and answers an apply with the applied object plus a status
the test chooses (by default: every replica ready), as the apiserver would after a rollout.
The last section checks the write path under the reconciler, ``KubeApi``, with the transport's
``send`` replaced: server-side apply with our field manager, the fence, and error translation
(``test_transport`` checks the transport itself against a local HTTP server).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes.client import ApiClient
from tests.support.caches import a_synced_cache
from tests.support.fakes import COUNTS, FakeApi
from tests.unit.factories import NOW, a_labserver, a_service, a_spec, controlled_by_a_stranger

from labkit.logs import FIELDS_ATTR
from labop import reasons
from labop.builders import build_deployment, build_service
from labop.cache import Cache, Key, child_entry, labserver_entry
from labop.kubeapi import APPLY, ApiError, Conflict, Gone, KubeApi, NotFound, apply_body
from labop.naming import DESIRED_HASH
from labop.ownedfields import fields_of, fields_v1
from labop.reconciler import CLEANUP_RECHECK_SECONDS, Reconciler
from labop.recorder import EventRecorder
from labop.runtime import PermanentError, Result, TransientError
from labop.runtime.leaderelection import LeaseLost
from labop.runtime.store import Store
from labop.spec import DEFAULT_IMAGE
from labop.status import Problem, compute_status
from labop.transport import Answer as TransportAnswer

KEY: Key = ("lab", "hello")
Entries = dict[Key, list[dict[str, Any]]]


class Packed(Store):
    """A store as the watch events fill it (packed entries), over dicts of unpacked entries a
    test may edit."""

    def __init__(self, entries: Entries) -> None:
        super().__init__("test", lambda obj: b"")
        self._unpacked = entries

    def get(self, key: Key) -> bytes | None:
        entries = self._unpacked.get(key)
        return json.dumps(entries[0]).encode() if entries else None

    def __contains__(self, key: object) -> bool:
        return key in self._unpacked

    def __iter__(self) -> Iterator[Key]:
        return iter(self._unpacked)

    def __len__(self) -> int:
        return len(self._unpacked)


class World:
    """The cache's three indexes as dicts, a FakeApi, and a Reconciler over both."""

    def __init__(self) -> None:
        self.labservers: Entries = {}
        self.deployments: Entries = {}
        self.services: Entries = {}
        self.api = FakeApi()
        self.reconciler = self.new_reconciler()

    def new_reconciler(self, **options: Any) -> Reconciler:
        """A Reconciler over this world's cache: a restarted operator when called again."""
        cache = Cache(Packed(self.labservers), Packed(self.deployments), Packed(self.services))
        return Reconciler(
            cache, self.api, EventRecorder(self.api), default_image=DEFAULT_IMAGE, now=lambda: NOW, **options
        )

    def store(self, ls: dict[str, Any]) -> dict[str, Any]:
        key = (ls["metadata"]["namespace"], ls["metadata"]["name"])
        self.labservers[key] = [json.loads(labserver_entry(ls))]
        return ls

    def store_child(self, child: dict[str, Any]) -> None:
        """A child that exists: in the cache, and on the fake apiserver."""
        key = (child["metadata"]["namespace"], child["metadata"]["name"])
        self.api.existing.add((child["kind"], *key))
        index = self.deployments if child["kind"] == "Deployment" else self.services
        index[key] = [json.loads(child_entry(child))]

    def store_children(self) -> None:
        """What the children's watches would bring into the indexes after this pass's applies."""
        for obj in self.api.live.values():
            self.store_child(obj)

    def store_what_was_written(self) -> None:
        """What the watches would bring into the indexes after this pass's writes."""
        self.store_children()
        (entry,) = self.labservers[KEY]
        if self.api.stored:
            entry["status"] = copy.deepcopy(self.api.stored[-1])
            entry["metadata"]["resourceVersion"] = self.api.labserver_versions[KEY]

    def deployment_status_becomes(self, status: dict[str, Any]) -> None:
        """What the Deployment controller does, as the watch brings it into the index."""
        (entry,) = self.deployments[KEY]
        entry["status"] = copy.deepcopy(status)

    async def reconcile(self, key: Key = KEY) -> None:
        assert await self.reconciler.reconcile(key) is None

    async def reconcile_with_echo(self, key: Key = KEY) -> None:
        """A pass, then the pass that its applies' watch events bring, with the children in the
        cache: a pass that applies the Deployment leaves the status to that one."""
        await self.reconcile(key)
        self.store_children()
        await self.reconcile(key)

    async def an_up_to_date_labserver(self) -> None:
        """A new LabServer after its first passes, as the watches then show it, with the call
        log cleared: what a test of a later pass starts from."""
        self.store(a_labserver())
        await self.reconcile_with_echo()
        self.store_what_was_written()
        self.api.calls.clear()


@pytest.fixture
def world() -> World:
    return World()


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


# --------------------------------------------------------------------------- nothing to do


async def test_a_labserver_missing_from_the_cache_is_left_alone(world: World) -> None:
    await world.reconcile(("lab", "gone"))
    assert world.api.calls == []


async def test_a_labserver_being_deleted_is_left_to_the_garbage_collector(world: World) -> None:
    ls = a_labserver()
    ls["metadata"]["deletionTimestamp"] = "2030-01-02T03:04:05Z"
    world.store(ls)
    await world.reconcile()
    assert world.api.calls == []


# --------------------------------------------------------------------------- a valid LabServer


async def test_a_valid_labserver_gets_its_deployment_then_its_service_as_the_builders_make_them(
    world: World,
) -> None:
    ls = world.store(a_labserver(replicas=2, message="hi"))
    await world.reconcile()
    spec = a_spec(ls)
    assert world.api.applied == [build_deployment(ls, spec), build_service(ls, spec)]


async def test_the_applied_children_are_controlled_by_the_labserver(world: World) -> None:
    ls = world.store(a_labserver())
    await world.reconcile()
    for child in world.api.applied:
        (ref,) = child["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "LabServer",
            "hello",
            ls["metadata"]["uid"],
            True,
        )


async def test_the_status_is_written_once_from_the_applied_children(world: World) -> None:
    world.store(a_labserver(replicas=2))
    await world.reconcile_with_echo()
    (status,) = world.api.statuses
    assert conditions(status) == {
        "Ready": ("True", "Available"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert (status["replicas"], status["readyReplicas"], status["observedGeneration"]) == (2, 2, 1)
    assert status["endpoints"]["host"] == "hello.lab.svc"
    ((namespace, name, _, precondition),) = world.api.arguments("apply_status")
    assert (namespace, name, precondition) == (*KEY, "1")  # the cached LabServer's resourceVersion


async def test_the_status_is_written_after_both_applies(world: World) -> None:
    world.store(a_labserver())
    await world.reconcile_with_echo()
    writes = [call for call, _ in world.api.calls if call != "create_event"]
    assert writes == ["apply", "apply", "apply_status"]


async def test_the_pass_that_applies_the_deployment_leaves_the_status_to_the_pass_its_watch_event_brings(
    world: World,
) -> None:
    world.store(a_labserver())
    await world.reconcile()
    assert world.api.statuses == []  # its controller has not seen it: nothing to report yet
    assert world.api.events == [("Normal", "Created", "Created Deployment hello; Created Service hello")]

    world.store_children()  # the applies' watch events, which enqueue the key again
    await world.reconcile()

    (status,) = world.api.statuses
    assert conditions(status)["Ready"] == ("True", "Available")


async def test_a_pass_that_applies_only_the_service_writes_the_status_at_once(world: World) -> None:
    await world.an_up_to_date_labserver()
    del world.services[KEY]  # deleted by hand, and a pod lost meanwhile
    world.api.existing.discard(("Service", *KEY))
    world.deployment_status_becomes({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1})

    await world.reconcile()

    assert world.api.applied_kinds == ["Service"]
    (status,) = world.api.statuses
    assert conditions(status)["Ready"] == ("False", "ReplicasUnavailable")


async def test_a_pass_whose_deployment_apply_changed_nothing_writes_the_status_at_once(world: World) -> None:
    await world.an_up_to_date_labserver()
    (deployment,) = world.deployments[KEY]
    deployment["fields"] = {}  # the cache shows no apply of ours: apply again
    world.api.unchanged_by_apply.add("Deployment")  # same version: no watch event will follow
    (labserver,) = world.labservers[KEY]
    del labserver["status"]  # and a status to write

    await world.reconcile()

    assert world.api.applied_kinds == ["Deployment"]
    (status,) = world.api.statuses
    assert conditions(status)["Ready"] == ("True", "Available")


async def test_a_new_labserver_gets_one_created_event_for_both_children_and_ready(world: World) -> None:
    world.store(a_labserver())
    await world.reconcile_with_echo()
    assert world.api.events == [
        ("Normal", "Created", "Created Deployment hello; Created Service hello"),
        ("Normal", "Ready", "1 of 1 replicas available."),
    ]


async def test_only_children_the_apiserver_created_get_a_created_event(world: World) -> None:
    ls = world.store(a_labserver())
    world.store_child(build_deployment(ls, a_spec(ls)))
    await world.reconcile()
    assert [e for e in world.api.events if e[1] == "Created"] == [
        ("Normal", "Created", "Created Service hello")
    ]
    assert world.api.applied_kinds == ["Deployment", "Service"]  # applied all the same


async def test_a_second_pass_over_the_written_status_writes_nothing(world: World) -> None:
    await world.an_up_to_date_labserver()

    await world.reconcile()

    assert world.api.statuses == []  # no write, so no watch event, so no loop
    assert world.api.events == []
    assert world.api.applied_kinds == []  # the children are as our last apply left them


async def test_a_rollout_in_progress_is_reported_and_then_its_end_is_written_once(world: World) -> None:
    world.store(a_labserver(replicas=2))
    world.api.deployment_status = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2}
    await world.reconcile_with_echo()
    (rolling,) = world.api.statuses
    assert conditions(rolling)["Ready"] == ("False", "ReplicasUnavailable")
    assert ("Normal", "Ready", "1 of 1 replicas available.") not in world.api.events

    world.store_what_was_written()
    world.api.calls.clear()
    world.deployment_status_becomes({"observedGeneration": 1, **dict.fromkeys(COUNTS, 2)})  # all ready
    await world.reconcile()
    (ready,) = world.api.statuses
    assert conditions(ready)["Ready"] == ("True", "Available")
    assert world.api.events == [("Normal", "Ready", "2 of 2 replicas available.")]


async def test_losing_readiness_posts_a_not_ready_warning(world: World) -> None:
    await world.an_up_to_date_labserver()

    world.deployment_status_becomes({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1})
    await world.reconcile()

    assert world.api.events == [("Warning", "NotReady", "0 of 1 replicas ready, 0 available.")]


async def test_a_spec_without_image_gets_the_default_image(world: World) -> None:
    world.store(a_labserver())
    await world.reconcile()
    deployment = world.api.applied[0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == DEFAULT_IMAGE


# --------------------------------------------------------------------------- permanent problems

GREEDY = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}


async def test_an_invalid_spec_is_reported_in_status_and_by_a_warning_and_nothing_is_applied(
    world: World,
) -> None:
    world.store(a_labserver(resources=GREEDY))
    # The apiserver's field path for the rule (its fieldPath), then which resource is over.
    with pytest.raises(PermanentError, match=r"spec\.resources\.requests: .*requests\.cpu 2 > limits\.cpu 1"):
        await world.reconciler.reconcile(KEY)
    assert world.api.applied == []
    (status,) = world.api.statuses
    assert conditions(status)["Degraded"] == ("True", "InvalidSpec")
    assert conditions(status)["Ready"] == ("False", "InvalidSpec")
    ((kind, reason, message),) = world.api.events
    assert (kind, reason) == ("Warning", "InvalidSpec")
    assert "must be less than or equal to its limit" in message


async def test_the_same_invalid_spec_again_writes_and_posts_nothing_new(world: World) -> None:
    world.store(a_labserver(resources=GREEDY))
    with pytest.raises(PermanentError):
        await world.reconciler.reconcile(KEY)
    world.store_what_was_written()
    world.api.calls.clear()

    with pytest.raises(PermanentError):
        await world.reconciler.reconcile(KEY)

    assert world.api.calls == []


async def test_fixing_the_spec_clears_the_problem_in_the_pass_that_applies_the_fix(world: World) -> None:
    ls = world.store(a_labserver(resources=GREEDY))
    with pytest.raises(PermanentError):
        await world.reconciler.reconcile(KEY)
    world.store_what_was_written()
    world.api.calls.clear()

    (entry,) = world.labservers[KEY]
    entry["spec"] = copy.deepcopy(ls["spec"])
    entry["spec"]["resources"] = {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}
    await world.reconcile()

    (status,) = world.api.statuses
    assert conditions(status)["Degraded"] == ("False", "AsExpected")
    assert world.api.applied_kinds == ["Deployment", "Service"]


@pytest.mark.parametrize("kind", ["Deployment", "Service"])
async def test_a_same_named_stranger_is_a_child_conflict_and_nothing_is_applied(
    world: World, kind: str
) -> None:
    ls = world.store(a_labserver())
    stranger = a_service(ls) if kind == "Service" else build_deployment(ls, a_spec(ls))
    stranger["metadata"]["ownerReferences"] = []
    world.store_child(stranger)

    with pytest.raises(PermanentError, match=f"{kind} hello exists and is not controlled"):
        await world.reconciler.reconcile(KEY)

    assert world.api.applied == []
    (status,) = world.api.statuses
    assert conditions(status)["Degraded"] == ("True", "ChildConflict")
    ((type_, reason, message),) = world.api.events
    assert (type_, reason) == ("Warning", "ChildConflict")
    assert message == f"{kind} hello exists and is not controlled by this LabServer; delete or rename it"


async def test_a_child_of_an_earlier_labserver_with_the_same_name_is_waited_for_quietly(world: World) -> None:
    ls = world.store(a_labserver(uid="new-uid"))
    world.store_child(a_service(ls, owner_uid="old-uid"))

    result = await world.reconciler.reconcile(KEY)

    assert result == Result(requeue_after=CLEANUP_RECHECK_SECONDS)  # a short requeue, no error
    assert world.api.applied == []
    assert world.api.events == []  # no Warning: the user has nothing to delete
    (status,) = world.api.statuses
    assert conditions(status) == {
        "Ready": ("False", "WaitingForCleanup"),
        "Progressing": ("True", "WaitingForCleanup"),
        "Degraded": ("False", "AsExpected"),
    }


async def test_once_the_earlier_labservers_child_is_collected_the_new_one_gets_its_own(world: World) -> None:
    ls = world.store(a_labserver(uid="new-uid"))
    world.store_child(a_service(ls, owner_uid="old-uid"))
    await world.reconciler.reconcile(KEY)
    world.store_what_was_written()
    del world.services[KEY]  # the garbage collector removed it
    world.api.existing.discard(("Service", *KEY))

    await world.reconcile_with_echo()

    assert world.api.applied_kinds == ["Deployment", "Service"]
    assert conditions(world.api.statuses[-1])["Ready"] == ("True", "Available")


async def test_a_stranger_beside_an_earlier_labservers_child_is_a_conflict(world: World) -> None:
    ls = world.store(a_labserver(uid="new-uid"))
    world.store_child(a_service(ls, owner_uid="old-uid"))
    world.store_child(controlled_by_a_stranger(build_deployment(ls, a_spec(ls))))
    with pytest.raises(PermanentError, match="Deployment hello exists and is not controlled"):
        await world.reconciler.reconcile(KEY)
    assert [event[:2] for event in world.api.events] == [("Warning", "ChildConflict")]


async def test_a_422_from_the_apply_is_an_invalid_spec_and_stops_the_pass(world: World) -> None:
    world.store(a_labserver())
    world.api.apply_errors["Deployment"] = ApiError(422, 'Deployment.apps "hello" is invalid')

    with pytest.raises(PermanentError, match="Deployment rejected by the API server"):
        await world.reconciler.reconcile(KEY)

    assert world.api.applied_kinds == ["Deployment"]  # the Service is not tried
    (status,) = world.api.statuses
    assert conditions(status)["Degraded"] == ("True", "InvalidSpec")
    expected = 'Deployment rejected by the API server: Deployment.apps "hello" is invalid'
    assert world.api.events == [("Warning", "InvalidSpec", expected)]


@pytest.mark.parametrize(
    "error",
    [
        ApiError(500, "etcdserver: request timed out"),
        ApiError(429, "too many requests"),
        ApiError(503, "service unavailable"),
        ApiError(0, "API server unreachable: ConnectionRefusedError"),
    ],
)
async def test_a_temporary_api_failure_is_a_transient_error_retried_by_the_workers(
    world: World, error: ApiError
) -> None:
    world.store(a_labserver())
    world.api.apply_errors["Deployment"] = error

    with pytest.raises(TransientError) as raised:
        await world.reconciler.reconcile(KEY)

    assert raised.value.__cause__ is error
    (status,) = world.api.statuses  # the user sees why while the workers retry
    assert conditions(status)["Degraded"] == ("True", "ReconcileError")


async def test_a_conflict_from_the_apply_requeues_at_once_without_an_error(world: World) -> None:
    world.store(a_labserver())
    world.api.apply_errors["Service"] = Conflict(409, "the object has been modified")
    assert await world.reconciler.reconcile(KEY) == Result(requeue=True)
    assert world.api.statuses == []
    assert [event for event in world.api.events if event[0] == "Warning"] == []


async def test_a_namespace_being_deleted_ends_the_pass_quietly(world: World) -> None:
    world.store(a_labserver())
    world.api.apply_errors["Deployment"] = ApiError(
        403,
        'deployments.apps "hello" is forbidden: unable to create new content in namespace lab '
        "because it is being terminated",
        ("NamespaceTerminating",),
    )
    await world.reconcile()
    assert world.api.statuses == [] and world.api.events == []


async def test_a_400_for_our_own_object_is_an_invalid_spec(world: World) -> None:
    world.store(a_labserver())
    world.api.apply_errors["Deployment"] = ApiError(400, "error decoding YAML: invalid character")
    with pytest.raises(PermanentError, match="Deployment rejected by the API server: error decoding YAML"):
        await world.reconciler.reconcile(KEY)
    assert conditions(world.api.statuses[-1])["Degraded"] == ("True", "InvalidSpec")


@pytest.mark.parametrize("error", [NotFound(404, "not found"), Gone(410, "gone")])
async def test_the_labserver_vanishing_during_the_status_write_ends_the_pass_quietly(
    world: World, error: ApiError
) -> None:
    world.store(a_labserver())
    world.api.status_error = error
    await world.reconcile_with_echo()
    assert len(world.api.statuses) == 1  # tried once, then gave up without an error
    assert ("Normal", "Ready", "1 of 1 replicas available.") not in world.api.events


async def test_the_namespace_vanishing_during_the_apply_ends_the_pass_quietly(world: World) -> None:
    world.store(a_labserver())
    world.api.apply_errors["Deployment"] = NotFound(404, 'namespaces "lab" not found')
    await world.reconcile()
    assert world.api.statuses == []


async def test_the_labserver_vanishing_while_a_problem_is_reported_still_raises_the_problem(
    world: World,
) -> None:
    world.store(a_labserver(resources=GREEDY))
    world.api.status_error = NotFound(404, "not found")
    with pytest.raises(PermanentError):
        await world.reconciler.reconcile(KEY)


async def test_a_problem_status_matches_compute_status_over_the_cached_children(world: World) -> None:
    ls = world.store(a_labserver(resources=GREEDY))
    with pytest.raises(PermanentError) as raised:
        await world.reconciler.reconcile(KEY)
    (status,) = world.api.statuses
    expected = compute_status(
        json.loads(labserver_entry(ls)),
        deployment=None,
        service=None,
        problem=Problem(reasons.INVALID_SPEC, str(raised.value)),
        now=NOW,
    )
    assert status == {k: v for k, v in expected.items() if v is not None}  # a null is left out


# --------------------------------------------------------------------------- KubeApi underneath


class Wire:
    """A stand-in for ``ApiTransport.send``: records each request (and the timeout it was given),
    answers with ``answer(request)``."""

    def __init__(self, answer: Callable[[Sent], TransportAnswer]) -> None:
        self.answer = answer
        self.sent: list[Sent] = []

    @classmethod
    def answering(cls, status: int, body: dict[str, Any] | None, reason: str = "Reason") -> Wire:
        return cls(lambda _: an_answer(status, body, reason))

    async def __call__(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        content_type: str,
        body: bytes,
        *,
        deadline: Callable[[], float],
    ) -> TransportAnswer:
        request = Sent(method, path, query, content_type, body, deadline())
        self.sent.append(request)
        return self.answer(request)


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    query: list[tuple[str, str]]
    content_type: str
    body: bytes
    timeout: float


def an_answer(status: int, body: dict[str, Any] | None, reason: str = "Reason") -> TransportAnswer:
    return TransportAnswer(status, reason, b"" if body is None else json.dumps(body).encode())


@pytest.fixture
def kube_api() -> Iterator[KubeApi]:
    client = ApiClient()  # no request is made: the tests replace the transport's send
    api = KubeApi(client, field_manager="k8s-lab", connections=1, timeout=7.0)
    yield api
    api.close()


def on_the_wire(kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch, wire: Wire) -> Wire:
    monkeypatch.setattr(kube_api._transport, "send", wire)
    return wire


async def test_kubeapi_applies_a_deployment_server_side_with_our_field_manager_and_force(
    kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    ls = a_labserver()
    deployment = build_deployment(ls, a_spec(ls))
    wire = on_the_wire(
        kube_api, monkeypatch, Wire.answering(201, {"kind": "Deployment", "metadata": {"name": "hello"}})
    )

    applied = await kube_api.apply(deployment)

    (sent,) = wire.sent
    assert sent.method == "PATCH"
    assert sent.path == "/apis/apps/v1/namespaces/lab/deployments/hello"
    assert sent.query == [("fieldManager", "k8s-lab"), ("force", "true")]
    assert sent.content_type == APPLY
    assert sent.body == apply_body(deployment) and json.loads(sent.body) == deployment  # literal UTF-8 JSON
    assert sent.timeout == 7.0
    assert applied.obj == {"kind": "Deployment", "metadata": {"name": "hello"}}
    assert applied.created  # 201


async def test_kubeapi_applies_a_service_through_the_core_api(
    kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    ls = a_labserver()
    wire = on_the_wire(kube_api, monkeypatch, Wire.answering(200, {}))
    applied = await kube_api.apply(build_service(ls, a_spec(ls)))
    assert not applied.created  # 200: it existed
    (sent,) = wire.sent
    assert sent.path == "/api/v1/namespaces/lab/services/hello"


async def test_kubeapi_applies_the_status_subresource_with_its_own_manager_and_a_version_precondition(
    kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = on_the_wire(kube_api, monkeypatch, Wire.answering(200, {"metadata": {"resourceVersion": "42"}}))
    ls = a_labserver()
    status = {"replicas": 1, "conditions": [{"type": "Ready", "message": "ok \U0001f600"}]}

    await kube_api.apply_status(ls, status)

    (sent,) = wire.sent
    assert sent.method == "PATCH"
    assert sent.path == "/apis/k8slab.dev/v1alpha1/namespaces/lab/labservers/hello/status"
    assert sent.query == [("fieldManager", "k8s-lab-status"), ("force", "true")]
    assert sent.content_type == APPLY
    assert json.loads(sent.body) == {
        "apiVersion": "k8slab.dev/v1alpha1",
        "kind": "LabServer",
        "metadata": {"name": "hello", "namespace": "lab", "resourceVersion": "1"},  # the precondition
        "status": status,
    }
    assert "\U0001f600".encode() in sent.body  # literal UTF-8, as for the children (see apply_body)
    assert sent.timeout == 7.0


async def test_kubeapi_posts_an_event_as_json_to_the_namespaces_events(
    kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = on_the_wire(kube_api, monkeypatch, Wire.answering(201, {"kind": "Event"}))
    event = {"apiVersion": "v1", "kind": "Event", "reason": "Created", "message": "ok \U0001f600"}

    await kube_api.create_event("lab", event)

    (sent,) = wire.sent
    assert (sent.method, sent.path, sent.query) == ("POST", "/api/v1/namespaces/lab/events", [])
    assert sent.content_type == "application/json"
    assert json.loads(sent.body) == event
    assert sent.timeout == 7.0


async def test_kubeapi_sends_a_json_patch_of_a_child_under_our_field_manager(
    kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = on_the_wire(kube_api, monkeypatch, Wire.answering(200, {}))
    ls = a_labserver()
    operations = [{"op": "remove", "path": "/metadata/ownerReferences/0"}]

    await kube_api.json_patch(build_service(ls, a_spec(ls)), operations)

    (sent,) = wire.sent
    assert (sent.method, sent.path) == ("PATCH", "/api/v1/namespaces/lab/services/hello")
    assert sent.query == [("fieldManager", "k8s-lab")]
    assert sent.content_type == "application/json-patch+json"
    assert json.loads(sent.body) == operations


async def test_kubeapi_asks_the_fence_for_each_writes_timeout_and_sends_nothing_once_the_lease_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    left = [3.0]

    def fence() -> float:
        if not left:
            raise LeaseLost("lease expired")
        return left.pop()

    api = KubeApi(ApiClient(), field_manager="k8s-lab", connections=1, timeout=7.0, fence=fence)
    wire = on_the_wire(api, monkeypatch, Wire.answering(201, {}))
    await api.create_event("lab", {})
    with pytest.raises(ApiError) as raised:
        await api.create_event("lab", {})
    assert [sent.timeout for sent in wire.sent] == [3.0]  # cut to the time left on the lease
    assert raised.value.status == 0 and raised.value.reason.startswith("not sent")


async def test_kubeapi_reports_a_failed_status_precondition_as_a_conflict(
    kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = {"kind": "Status", "code": 409, "message": "the object has been modified"}
    on_the_wire(kube_api, monkeypatch, Wire.answering(409, stale))
    with pytest.raises(Conflict):
        await kube_api.apply_status(a_labserver(), {"replicas": 1})


@pytest.mark.parametrize(("status", "kind"), [(404, NotFound), (409, Conflict), (410, Gone)])
async def test_kubeapi_translates_the_statuses_the_reconciler_tells_apart(
    kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch, status: int, kind: type[ApiError]
) -> None:
    on_the_wire(
        kube_api, monkeypatch, Wire.answering(status, {"kind": "Status", "code": status, "message": "M"})
    )
    with pytest.raises(kind) as raised:
        await kube_api.create_event("lab", {})
    assert (raised.value.status, raised.value.reason) == (status, "M")


async def test_kubeapi_turns_any_other_error_answer_into_an_api_error_with_the_apiservers_message(
    kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 422 must reach the reconciler as an ApiError, or its InvalidSpec branch never runs.
    message = 'Deployment.apps "hello" is invalid: spec.template: Invalid value'
    on_the_wire(
        kube_api, monkeypatch, Wire.answering(422, {"kind": "Status", "code": 422, "message": message})
    )
    ls = a_labserver()
    with pytest.raises(ApiError) as raised:
        await kube_api.apply(build_deployment(ls, a_spec(ls)))
    assert type(raised.value) is ApiError
    assert (raised.value.status, raised.value.reason) == (422, message)


async def test_kubeapi_falls_back_on_the_http_reason_without_a_status_body(
    kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_the_wire(kube_api, monkeypatch, Wire.answering(500, None, reason="Internal Server Error"))
    with pytest.raises(ApiError) as raised:
        await kube_api.create_event("lab", {})
    assert (raised.value.status, raised.value.reason) == (500, "Internal Server Error")


async def test_a_422_through_kubeapi_makes_the_reconciler_report_invalid_spec(
    kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    rejection = an_answer(
        422, {"kind": "Status", "message": "spec.template.spec.containers[0].image: Required"}
    )
    status_bodies: list[dict[str, Any]] = []

    def answer(sent: Sent) -> TransportAnswer:
        if sent.path.endswith("/status"):
            status_bodies.append(json.loads(sent.body))
            return an_answer(200, {})
        if sent.path.endswith("/events"):
            return an_answer(201, {})
        return rejection

    on_the_wire(kube_api, monkeypatch, Wire(answer))
    ls = a_labserver()
    cache = a_synced_cache(labservers=[ls])
    reconciler = Reconciler(
        cache, kube_api, EventRecorder(kube_api), default_image=DEFAULT_IMAGE, now=lambda: NOW
    )

    with pytest.raises(PermanentError, match=r"containers\[0\]\.image: Required"):
        await reconciler.reconcile(KEY)

    (body,) = status_bodies
    assert conditions(body["status"])["Degraded"] == ("True", "InvalidSpec")


async def test_a_pass_before_the_cache_sees_our_status_write_stores_nothing_and_repeats_no_event(
    world: World,
) -> None:
    world.store(a_labserver())
    await world.reconcile_with_echo()
    world.store_children()
    stored, events = list(world.api.stored), list(world.api.events)
    # The watch has not delivered our status write yet: the cached LabServer is unchanged, so
    # the write computed from it is refused by its resourceVersion precondition.
    assert await world.reconciler.reconcile(KEY) is None  # no requeue: the watch event will come
    assert world.api.stored == stored
    assert world.api.events == events
    # Once the watch delivered it, there is nothing new to write either.
    world.store_what_was_written()
    world.api.calls.clear()
    await world.reconcile()
    assert world.api.calls == []


async def test_a_labserver_deleted_and_recreated_under_the_same_name_starts_from_its_own_status(
    world: World,
) -> None:
    world.store(a_labserver())
    await world.reconcile_with_echo()
    del world.labservers[KEY]
    await world.reconcile()  # gone: forgets what it wrote
    world.store(a_labserver())
    await world.reconcile()
    assert len(world.api.statuses) == 2


async def test_a_temporary_api_error_is_shown_in_status_and_still_retried(world: World) -> None:
    world.store(a_labserver())
    world.api.apply_errors["Deployment"] = ApiError(
        403, 'deployments.apps is forbidden: User "x" cannot patch'
    )
    with pytest.raises(TransientError):
        await world.reconcile()
    (status,) = world.api.statuses
    assert conditions(status)["Degraded"] == ("True", "ReconcileError")
    assert conditions(status)["Progressing"][1] == "Retrying"
    assert ("Warning", "ReconcileError") in {e[:2] for e in world.api.events}


async def test_a_pass_triggered_by_a_child_status_change_applies_nothing(world: World) -> None:
    world.store(a_labserver())
    await world.reconcile()
    world.store_what_was_written()
    applies = len(world.api.applied)
    await world.reconcile()  # e.g. the Deployment's readyReplicas changed: our fields did not
    assert len(world.api.applied) == applies


async def test_a_hand_edited_deployment_is_applied_again(world: World) -> None:
    world.store(a_labserver())
    await world.reconcile()
    world.store_what_was_written()
    edited = copy.deepcopy(world.api.live[("Deployment", "lab", "hello")])
    image = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"server"}', "f:image")
    # kubectl edit of the image: the field moves from our Apply entry to kubectl's Update entry.
    (ours,) = edited["metadata"]["managedFields"]
    ours["fieldsV1"] = fields_v1(fields_of(ours["fieldsV1"]) - {image})
    edited["metadata"]["managedFields"].append(
        {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": fields_v1(frozenset({image}))}
    )
    world.store_child(edited)
    await world.reconcile()
    assert world.api.applied_kinds[-1:] == ["Deployment"]


async def test_a_spec_change_is_applied_even_when_the_children_are_unchanged(world: World) -> None:
    world.store(a_labserver())
    await world.reconcile()
    world.store_what_was_written()
    applies = len(world.api.applied)
    (entry,) = world.labservers[KEY]
    entry["spec"]["message"] = "new words"
    await world.reconcile()
    assert len(world.api.applied) > applies


async def test_an_apply_refused_after_a_hand_edit_of_a_list_key_resets_the_list_and_applies_again(
    world: World,
) -> None:
    ls = world.store(a_labserver())
    world.store_child(build_service(ls, a_spec(ls)))
    world.api.apply_errors["Service"] = ApiError(
        422, 'Service "hello" is invalid: spec.ports[1].name: Duplicate'
    )
    await world.reconcile_with_echo()
    (reset,) = world.api.arguments("json_patch")
    assert reset[0] == "Service"
    assert reset[1][0]["path"] == "/spec/ports"
    assert world.api.applied_kinds.count("Service") == 2  # refused, then applied after the reset
    assert conditions(world.api.statuses[-1])["Degraded"][0] == "False"


async def test_a_change_seen_before_our_own_status_write_is_written_once_the_cache_has_it(
    world: World,
) -> None:
    world.store(a_labserver())
    world.api.deployment_status = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1}
    await world.reconcile_with_echo()  # stores RollingOut... (not ready yet)
    (first,) = world.api.stored
    # The children's watch events arrive, the LabServer's (our status write) not yet.
    (entry,) = world.labservers[KEY]
    stale_status, stale_version = copy.deepcopy(entry.get("status")), entry["metadata"]["resourceVersion"]
    world.store_what_was_written()
    entry["status"], entry["metadata"]["resourceVersion"] = stale_status, stale_version
    world.deployment_status_becomes({"observedGeneration": 1, **dict.fromkeys(COUNTS, 1)})
    await world.reconcile()  # computed from the stale LabServer: refused, not stored
    assert world.api.stored == [first]
    assert ("Normal", "Ready", "1 of 1 replicas available.") not in world.api.events

    # Now the watch brings our first write.
    entry["status"], entry["metadata"]["resourceVersion"] = (
        copy.deepcopy(first),
        world.api.labserver_versions[KEY],
    )
    await world.reconcile()  # Ready, computed from what is stored: written, one Ready Event

    assert len(world.api.stored) == 2
    second = world.api.stored[-1]
    assert conditions(second)["Ready"] == ("True", "Available")
    assert world.api.events.count(("Normal", "Ready", "1 of 1 replicas available.")) == 1
    # Degraded stayed False: its lastTransitionTime is the first write's.
    (degraded_before,) = [c for c in first["conditions"] if c["type"] == "Degraded"]
    (degraded_after,) = [c for c in second["conditions"] if c["type"] == "Degraded"]
    assert degraded_after["lastTransitionTime"] == degraded_before["lastTransitionTime"]


async def test_a_condition_written_by_someone_else_is_neither_applied_nor_taken_over(world: World) -> None:
    foreign = {
        "type": "example.com/Audited",
        "status": "True",
        "lastTransitionTime": "2030-01-01T00:00:00Z",
        "reason": "Checked",
        "message": "ok",
    }
    world.store(a_labserver(status={"conditions": [foreign]}))
    await world.reconcile_with_echo()
    (sent,) = world.api.statuses
    assert [c["type"] for c in sent["conditions"]] == ["Ready", "Progressing", "Degraded"]


async def test_a_status_field_that_became_null_is_left_out_of_the_apply_so_it_is_removed(
    world: World,
) -> None:
    ls = world.store(a_labserver(uid="new-uid"))
    world.store_child(a_service(ls, owner_uid="old-uid"))  # not ours: no endpoints
    await world.reconciler.reconcile(KEY)
    (sent,) = world.api.statuses
    assert "endpoints" not in sent and None not in sent.values()


async def test_a_restarted_reconciler_over_up_to_date_children_writes_nothing(world: World) -> None:
    await world.an_up_to_date_labserver()
    world.reconciler = world.new_reconciler()  # no memory of the applies: only the cache
    await world.reconcile()
    assert world.api.calls == []


async def test_a_child_whose_owned_fields_changed_hands_is_applied_again_after_a_restart(
    world: World,
) -> None:
    world.store(a_labserver())
    await world.reconcile()
    world.store_what_was_written()
    (entry,) = world.deployments[KEY]
    entry["fields"]["k8s-lab"] = "another set"  # e.g. kubectl scale took spec.replicas
    world.reconciler = world.new_reconciler()
    await world.reconcile()
    assert world.api.applied_kinds[-1:] == ["Deployment"]


async def test_a_child_last_applied_from_another_spec_is_applied_again(world: World) -> None:
    world.store(a_labserver())
    await world.reconcile()
    world.store_what_was_written()
    (entry,) = world.services[KEY]
    entry["metadata"]["annotations"][DESIRED_HASH] = "an older operator's object"
    world.reconciler = world.new_reconciler()
    await world.reconcile()
    assert world.api.applied_kinds[-1:] == ["Service"]


def applied_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The fields of each "child applied" line, in order."""
    return [getattr(r, FIELDS_ATTR) for r in caplog.records if r.getMessage() == "child applied"]


async def test_each_apply_of_a_child_is_logged_with_its_kind_and_why_it_was_due(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="labop.reconciler")
    world.store(a_labserver())
    await world.reconcile()
    assert [(f["kind"], f["reason"], f["created"]) for f in applied_lines(caplog)] == [
        ("Deployment", "absent", True),
        ("Service", "absent", True),
    ]


async def test_a_restart_over_up_to_date_children_logs_no_apply(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.store(a_labserver())
    await world.reconcile()
    world.store_what_was_written()
    world.reconciler = world.new_reconciler()
    caplog.set_level(logging.INFO, logger="labop.reconciler")
    await world.reconcile()
    assert applied_lines(caplog) == []


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda entry: entry["metadata"]["annotations"].update({DESIRED_HASH: "older"}), "desired changed"),
        (lambda entry: entry["fields"].pop("k8s-lab"), "no apply entry"),
        (lambda entry: entry["fields"].update({"k8s-lab": "another set"}), "owned fields changed"),
    ],
)
async def test_the_apply_after_a_restart_names_what_the_cached_child_lacked(
    world: World, caplog: pytest.LogCaptureFixture, edit: Callable[[dict[str, Any]], object], reason: str
) -> None:
    world.store(a_labserver())
    await world.reconcile()
    world.store_what_was_written()
    (entry,) = world.deployments[KEY]
    edit(entry)
    world.reconciler = world.new_reconciler()
    caplog.set_level(logging.INFO, logger="labop.reconciler")
    await world.reconcile()
    (line,) = applied_lines(caplog)
    assert (line["kind"], line["reason"], line["created"]) == ("Deployment", reason, False)
    assert line["cached_version"] == entry["metadata"]["resourceVersion"]


async def test_a_status_write_is_logged_at_debug_with_the_ready_condition(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="labop.reconciler")
    world.store(a_labserver())
    await world.reconcile_with_echo()
    (written,) = [r for r in caplog.records if r.getMessage() == "status written"]
    assert written.levelno == logging.DEBUG
    assert getattr(written, FIELDS_ATTR) == {"ready": "True", "reason": "Available"}


async def test_a_pass_before_the_cache_shows_our_apply_does_not_apply_again(world: World) -> None:
    ls = world.store(a_labserver())
    world.store_child(a_service(ls))  # an older Service: the cache still shows it after our apply
    (entry,) = world.services[KEY]
    entry["metadata"].update(resourceVersion="5", annotations={DESIRED_HASH: "older"})
    await world.reconciler.reconcile(KEY)
    applies = len(world.api.applied)
    await world.reconciler.reconcile(KEY)  # the Service's watch event has not arrived yet
    assert len(world.api.applied) == applies


async def test_once_the_cache_moved_past_our_apply_it_decides_again(world: World) -> None:
    ls = world.store(a_labserver())
    world.store_child(a_service(ls))
    (entry,) = world.services[KEY]
    entry["metadata"].update(resourceVersion="5", annotations={DESIRED_HASH: "older"})
    await world.reconciler.reconcile(KEY)
    applies = len(world.api.applied)
    entry["metadata"]["resourceVersion"] = "a newer one, edited by hand"  # the hash still differs
    await world.reconciler.reconcile(KEY)
    assert world.api.applied_kinds[applies:] == ["Service"]


async def test_a_pass_that_trusted_a_creation_the_cache_has_not_shown_looks_again_later(world: World) -> None:
    world.store(a_labserver())
    await world.reconcile()  # creates both children; the cache shows neither yet
    applies = len(world.api.applied)
    result = await world.reconciler.reconcile(KEY)
    assert len(world.api.applied) == applies
    assert result is not None and result.requeue_after is not None and result.requeue_after > 0


async def test_a_deleted_labserver_leaves_no_pending_applies_behind(world: World) -> None:
    world.store(a_labserver())
    await world.reconcile()
    del world.labservers[KEY]
    await world.reconcile()
    assert world.reconciler._pending == {}


async def test_a_problem_whose_status_write_fails_is_still_told_by_its_warning_event(world: World) -> None:
    world.store(a_labserver(resources=GREEDY))
    world.api.status_error = ApiError(500, "etcdserver: request timed out")
    with pytest.raises(ApiError):
        await world.reconciler.reconcile(KEY)
    ((kind, reason, _),) = world.api.events
    assert (kind, reason) == ("Warning", "InvalidSpec")
