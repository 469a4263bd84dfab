"""labop.transport (and KubeApi over it): the operator's writes on the event loop.

A local aiohttp server on 127.0.0.1 stands in for the apiserver (the one bit of I/O here: the
transport's whole job is the request on the wire). Each test says what the apiserver answers
and checks what was sent and what the caller sees: the bearer token, the retry after a 401, the
error kinds with the apiserver's message, no answer as status 0, the apply body byte for byte,
that the token and TLS files are read in a thread, never on the loop, and that every request sent
is counted as client-go counts it (``rest_client_requests_total``), the resend after a 401 too.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from kubernetes.client import ApiClient, Configuration
from prometheus_client import CollectorRegistry
from tests.unit.factories import a_labserver, a_spec

from labop import transport
from labop.apierrors import ApiError, Conflict, NotFound
from labop.builders import build_deployment
from labop.kubeapi import APPLY, KubeApi, apply_body
from labop.runtime.leaderelection import LeaseLost
from labop.transport import ApiTransport, Credentials, host_label

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    content_type: str | None
    body: bytes


@dataclass
class FakeApiserver:
    """Records each request; ``answer`` says what to send back (by default 200 and ``{}``)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    answer: Handler | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(
            Received(
                request.method,
                request.path,
                dict(request.query),
                request.headers.get("Authorization"),
                request.headers.get("Content-Type"),
                body,
            )
        )
        if self.answer is not None:
            return await self.answer(request)
        return web.json_response({})


@pytest.fixture
async def apiserver() -> AsyncIterator[FakeApiserver]:
    fake = FakeApiserver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{site_port(runner)}"
    yield fake
    await runner.cleanup()


def site_port(runner: web.AppRunner) -> int:
    (address,) = runner.addresses
    return int(address[1])


class TokenHook:
    """The configuration's ``refresh_api_key_hook``: hands out tokens in turn, records the
    thread each read ran in."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.threads: list[threading.Thread] = []

    def __call__(self, config: Configuration) -> None:
        self.threads.append(threading.current_thread())
        config.api_key["BearerToken"] = f"Bearer {self.tokens[min(len(self.threads), len(self.tokens)) - 1]}"


def a_config(url: str, hook: TokenHook | None = None) -> Configuration:
    config = Configuration(host=url, api_key={"BearerToken": "Bearer t1"})
    config.refresh_api_key_hook = hook  # type: ignore[assignment]  # the client types it as None
    return config


def status_answer(status: int, message: str) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response({"kind": "Status", "code": status, "message": message}, status=status)

    return answer


@pytest.fixture
async def kube_api(apiserver: FakeApiserver) -> AsyncIterator[KubeApi]:
    api = KubeApi(ApiClient(a_config(apiserver.url)), field_manager="k8s-lab", connections=2, timeout=5.0)
    yield api
    await api.aclose()


async def test_each_request_carries_the_bearer_token_of_the_clients_configuration(
    apiserver: FakeApiserver, kube_api: KubeApi
) -> None:
    await kube_api.create_event("lab", {"kind": "Event"})
    await kube_api.create_event("lab", {"kind": "Event"})
    assert [r.authorization for r in apiserver.received] == ["Bearer t1", "Bearer t1"]
    assert [(r.method, r.path) for r in apiserver.received] == [("POST", "/api/v1/namespaces/lab/events")] * 2


async def test_the_body_of_an_apply_is_sent_byte_for_byte_with_its_query(
    apiserver: FakeApiserver, kube_api: KubeApi
) -> None:
    ls = a_labserver(message="hello \U0001f600 $(HOME)")
    deployment = build_deployment(ls, a_spec(ls))
    apiserver.answer = created

    applied = await kube_api.apply(deployment)

    (received,) = apiserver.received
    assert received.body == apply_body(deployment)
    assert "\U0001f600".encode() in received.body  # literal UTF-8, no surrogate escapes
    assert (received.method, received.path) == ("PATCH", "/apis/apps/v1/namespaces/lab/deployments/hello")
    assert received.query == {"fieldManager": "k8s-lab", "force": "true"}
    assert received.content_type == APPLY
    assert applied.created and applied.obj == {"kind": "Deployment"}


async def created(request: web.Request) -> web.StreamResponse:
    return web.json_response({"kind": "Deployment"}, status=201)


async def unauthorized_until_the_new_token(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Authorization") != "Bearer new":
        return web.json_response({"kind": "Status", "message": "Unauthorized"}, status=401)
    return web.json_response({})


async def test_a_401_reads_the_token_again_and_sends_the_request_once_more(apiserver: FakeApiserver) -> None:
    hook = TokenHook("old", "new")

    apiserver.answer = unauthorized_until_the_new_token
    api = ApiTransport(a_config(apiserver.url, hook), connections=1)
    try:
        sent = await api.send("POST", "/x", [], "application/json", b"{}", deadline=lambda: 5.0)
    finally:
        await api.aclose()

    assert sent.status == 200
    assert [r.authorization for r in apiserver.received] == ["Bearer old", "Bearer new"]
    assert len(hook.threads) == 2


async def test_a_second_401_is_the_answer_no_third_request(
    apiserver: FakeApiserver, kube_api: KubeApi
) -> None:
    apiserver.answer = status_answer(401, "Unauthorized")
    with pytest.raises(ApiError) as raised:
        await kube_api.create_event("lab", {})
    assert (raised.value.status, raised.value.reason) == (401, "Unauthorized")
    assert len(apiserver.received) == 2


async def test_the_token_and_the_tls_settings_are_read_in_threads_never_on_the_loop(
    apiserver: FakeApiserver, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = TokenHook("t")
    tls_threads: list[threading.Thread] = []
    build = transport.ssl_context_of

    def ssl_context_of(config: Configuration) -> Any:
        tls_threads.append(threading.current_thread())
        return build(config)

    monkeypatch.setattr(transport, "ssl_context_of", ssl_context_of)
    api = ApiTransport(a_config(apiserver.url, hook), connections=1)
    try:
        for _ in range(3):
            await api.send("POST", "/x", [], "application/json", b"{}", deadline=lambda: 5.0)
    finally:
        await api.aclose()

    loop_thread = threading.current_thread()
    assert len(hook.threads) == 1  # kept for a minute, not read per request
    assert len(tls_threads) == 1  # once, when the session opened
    assert loop_thread not in hook.threads + tls_threads


async def test_the_token_is_read_again_once_it_is_a_minute_old() -> None:
    now = [0.0]
    reads: list[float] = []

    def read() -> str:
        reads.append(now[0])
        return f"Bearer {len(reads)}"

    credentials = Credentials(read, ttl=60.0, clock=lambda: now[0])
    assert await credentials.header() == "Bearer 1"
    now[0] = 59.0
    assert await credentials.header() == "Bearer 1"
    now[0] = 60.0
    assert await credentials.header() == "Bearer 2"
    assert reads == [0.0, 60.0]


async def test_concurrent_401s_read_the_token_once() -> None:
    reads: list[str] = []

    def read() -> str:
        reads.append("read")
        return f"Bearer {len(reads)}"

    credentials = Credentials(read)
    refused = await credentials.header()
    headers = await asyncio.gather(*(credentials.refresh(refused=refused) for _ in range(5)))
    assert headers == ["Bearer 2"] * 5
    assert len(reads) == 2


@pytest.mark.parametrize(
    ("status", "kind"), [(404, NotFound), (409, Conflict), (422, ApiError), (500, ApiError), (403, ApiError)]
)
async def test_an_error_answer_is_an_api_error_of_its_kind_with_the_apiservers_message(
    apiserver: FakeApiserver, kube_api: KubeApi, status: int, kind: type[ApiError]
) -> None:
    apiserver.answer = status_answer(status, f"the apiserver says {status}")
    ls = a_labserver()
    with pytest.raises(ApiError) as raised:
        await kube_api.apply(build_deployment(ls, a_spec(ls)))
    assert type(raised.value) is kind
    assert (raised.value.status, raised.value.reason) == (status, f"the apiserver says {status}")
    assert len(apiserver.received) == 1  # never resent


async def test_a_refused_connection_is_an_api_error_with_no_status() -> None:
    with socket.socket() as sock:  # a port nobody listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = KubeApi(
        ApiClient(a_config(f"http://127.0.0.1:{port}")), field_manager="m", connections=1, timeout=5.0
    )
    try:
        with pytest.raises(ApiError) as raised:
            await api.create_event("lab", {})
    finally:
        await api.aclose()
    assert raised.value.status == 0
    assert raised.value.reason.startswith("API server unreachable: ")


async def test_a_request_that_times_out_is_an_api_error_with_no_status_and_is_not_resent(
    apiserver: FakeApiserver,
) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({})

    apiserver.answer = hang
    api = KubeApi(ApiClient(a_config(apiserver.url)), field_manager="m", connections=1, timeout=0.2)
    try:
        with pytest.raises(ApiError) as raised:
            await api.create_event("lab", {})
    finally:
        release.set()
        await api.aclose()
    assert raised.value.status == 0
    assert "TimeoutError" in raised.value.reason
    assert len(apiserver.received) == 1


async def test_close_from_sync_code_on_the_loop_closes_the_session(
    apiserver: FakeApiserver, kube_api: KubeApi
) -> None:
    await kube_api.create_event("lab", {})
    session = kube_api._transport._session
    assert session is not None and not session.closed

    kube_api.close()  # what the controller calls once its workers and the Event sender are done
    closing = kube_api._transport._closing
    assert closing is not None
    await closing

    assert session.closed
    assert kube_api._transport._session is None


async def test_a_write_dropped_on_a_reused_connection_is_not_resent() -> None:
    """aiohttp resends an idempotent request whose kept-alive connection turns out closed; our
    writes (PATCH, POST) must not be: each send passes the fence, a silent resend would not."""
    heads: list[bytes] = []

    async def answer_once_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                heads.append(head)
                length = next(
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if len(heads) > 1:
                    return  # received, never answered: the connection drops
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
        except asyncio.IncompleteReadError:
            return
        finally:
            writer.close()

    server = await asyncio.start_server(answer_once_then_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    api = ApiTransport(a_config(f"http://127.0.0.1:{port}"), connections=1)
    try:
        first = await api.send("PATCH", "/x", [], APPLY, b"{}", deadline=lambda: 5.0)
        with pytest.raises(ApiError) as raised:
            await api.send("PATCH", "/x", [], APPLY, b"{}", deadline=lambda: 5.0)
    finally:
        await api.aclose()
        server.close()
        await server.wait_closed()
    assert first.status == 200
    assert raised.value.status == 0
    assert len(heads) == 2


# --------------------------------------------------------------------------- rest_client_requests_total


def requests_counted(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    """Every ``rest_client_requests_total`` sample, by (code, method, host)."""
    return {
        (sample.labels["code"], sample.labels["method"], sample.labels["host"]): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "rest_client_requests_total"
    }


def host_of(url: str) -> str:
    return url.removeprefix("http://")


async def test_every_request_sent_is_counted_by_status_method_and_host_as_client_go_counts_it(
    apiserver: FakeApiserver,
) -> None:
    registry = CollectorRegistry()
    api = KubeApi(
        ApiClient(a_config(apiserver.url)), field_manager="m", connections=1, timeout=5.0, registry=registry
    )
    ls = a_labserver()
    try:
        apiserver.answer = created
        await api.apply(build_deployment(ls, a_spec(ls)))
        await api.apply(build_deployment(ls, a_spec(ls)))
        apiserver.answer = status_answer(404, 'namespaces "lab" not found')
        with pytest.raises(NotFound):
            await api.create_event("lab", {})
    finally:
        await api.aclose()

    host = host_of(apiserver.url)
    assert requests_counted(registry) == {("201", "PATCH", host): 2.0, ("404", "POST", host): 1.0}


async def test_the_resend_after_a_401_is_counted_as_a_request_of_its_own(apiserver: FakeApiserver) -> None:
    hook = TokenHook("old", "new")

    apiserver.answer = unauthorized_until_the_new_token
    registry = CollectorRegistry()
    api = ApiTransport(a_config(apiserver.url, hook), connections=1, registry=registry)
    try:
        await api.send("PATCH", "/x", [], APPLY, b"{}", deadline=lambda: 5.0)
    finally:
        await api.aclose()

    host = host_of(apiserver.url)
    assert requests_counted(registry) == {("401", "PATCH", host): 1.0, ("200", "PATCH", host): 1.0}


async def test_a_request_with_no_answer_is_counted_with_the_code_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = CollectorRegistry()
    api = ApiTransport(a_config(f"http://127.0.0.1:{port}"), connections=1, registry=registry)
    try:
        with pytest.raises(ApiError):
            await api.send("POST", "/x", [], "application/json", b"{}", deadline=lambda: 5.0)
    finally:
        await api.aclose()
    assert requests_counted(registry) == {("<error>", "POST", f"127.0.0.1:{port}"): 1.0}


async def test_a_request_cancelled_while_it_waits_for_its_answer_is_counted_with_the_code_error(
    apiserver: FakeApiserver,
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.json_response({})

    apiserver.answer = hang
    registry = CollectorRegistry()
    api = ApiTransport(a_config(apiserver.url), connections=1, registry=registry)
    sending = asyncio.create_task(api.send("DELETE", "/x", [], "application/json", b"", deadline=lambda: 5.0))
    try:
        await asyncio.wait_for(arrived.wait(), timeout=5)
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
    finally:
        release.set()
        await api.aclose()
    # It reached the apiserver, which may have acted on it: a write is a write.
    assert requests_counted(registry) == {("<error>", "DELETE", host_of(apiserver.url)): 1.0}


async def test_a_write_the_fence_refuses_is_not_sent_and_not_counted(apiserver: FakeApiserver) -> None:
    def lost() -> float:
        raise LeaseLost("lease expired")

    registry = CollectorRegistry()
    api = KubeApi(
        ApiClient(a_config(apiserver.url)),
        field_manager="m",
        connections=1,
        timeout=5.0,
        fence=lost,
        registry=registry,
    )
    try:
        with pytest.raises(ApiError):
            await api.create_event("lab", {})
    finally:
        await api.aclose()
    assert apiserver.received == []
    assert requests_counted(registry) == {}


async def test_two_transports_count_on_one_registry_side_by_side(apiserver: FakeApiserver) -> None:
    registry = CollectorRegistry()
    first = ApiTransport(a_config(apiserver.url), connections=1, registry=registry)
    second = ApiTransport(a_config(apiserver.url + "/"), connections=1, registry=registry)
    try:
        await first.send("POST", "/x", [], "application/json", b"{}", deadline=lambda: 5.0)
        await second.send("POST", "/x", [], "application/json", b"{}", deadline=lambda: 5.0)
    finally:
        await first.aclose()
        await second.aclose()
    assert requests_counted(registry) == {("200", "POST", host_of(apiserver.url)): 2.0}


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://10.96.0.1:443", "10.96.0.1:443"),
        ("https://kubernetes.default.svc", "kubernetes.default.svc"),
        ("https://user:secret@[::1]:6443/prefix", "[::1]:6443"),
        ("", "none"),
    ],
)
def test_the_host_label_is_the_urls_host_and_port_as_written_without_credentials(url: str, host: str) -> None:
    assert host_label(url) == host
