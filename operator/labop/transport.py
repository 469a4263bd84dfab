"""One request to the apiserver, sent on the event loop (aiohttp) with the client's credentials.

Role: ``ApiTransport.send`` sends one request and returns the answer's status, reason and body
bytes, whatever the status; no answer at all (refused, reset, TLS failure, timed out) comes out
as ``apierrors.unreachable`` (status 0). What a status means is ``apierrors``' business, which
request to send is ``kubeapi``'s.

Why not the official client: it is synchronous, so each write went to a pool thread and back.
At 1,000 LabServers that was ~12 % of the operator's CPU in urllib3/http.client inside the pool
threads plus ~11 % in the hops themselves (``run_in_executor``, waking the loop from a thread;
bench/profiles/README.md). kopf already runs aiohttp on the loop, so the writes go there too.

The credentials are those of the ``kubernetes.client.Configuration`` that ``load_client``
builds (kubeconfig or in-cluster): host, CA, client certificate, ``verify_ssl``, proxy, and the
bearer token. Reading the token may do I/O (the in-cluster hook re-reads the projected token
file, a kubeconfig exec plugin runs a program), so it is read in a thread, never on the loop,
and kept for ``TOKEN_TTL`` seconds; an answer 401 refreshes it at once and sends that request
once more (a refresh already done by a concurrent request is reused, not repeated). The SSL
context (it reads the CA and key files) is built in a thread too, when the first request opens
the session. aiohttp resends nothing on its own for PATCH and POST (only idempotent methods on
a dropped keep-alive connection, and we send none): with leader election every write must pass
the fence each time it is sent, and the retry after a 401 asks the fence again.

Counted here, and only here (every request the operator's writes make passes ``send``):
client-go's ``rest_client_requests_total{code,method,host}`` on the registry passed in
(``/metrics``, never prometheus' global registry), so the operator reports its own requests as a
Go controller does and a test can tell them from other clients' (the apiserver's own counters
name no client). As in client-go every attempt counts, the resend after a 401 too; ``code`` is
the answer's HTTP status, ``"<error>"`` when none came (refused, reset, timed out, cancelled);
``host`` is the apiserver URL's host[:port]. A request the fence refuses is not sent, not
counted. Not counted, unlike client-go's: kopf's watches, lists and Events, and the Lease
client's requests, which have clients of their own.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from kubernetes.client import Configuration
from kubernetes.client.rest import should_bypass_proxies
from prometheus_client import CollectorRegistry, Counter

from labop.apierrors import unreachable
from labop.runtime.metrics import once_per_registry

# How long a bearer token read from the client's configuration is used before it is read again
# (the in-cluster loader itself re-reads its file at most once a minute).
TOKEN_TTL = 60.0
NO_ANSWER = (aiohttp.ClientError, TimeoutError, OSError)  # ssl.SSLError is an OSError
# client-go's label value for an attempt that got no answer (its errors are unbounded strings).
NO_ANSWER_CODE = "<error>"


@dataclass(frozen=True)
class Answer:
    """The apiserver's answer: status, HTTP reason phrase, the body as sent."""

    status: int
    reason: str
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299


def ssl_context_of(config: Configuration) -> ssl.SSLContext:
    """The client's TLS settings as one context (reads files: call it in a thread)."""
    context = ssl.create_default_context(cafile=config.ssl_ca_cert)
    if config.ca_cert_data:
        data = config.ca_cert_data
        context.load_verify_locations(cadata=data.decode() if isinstance(data, bytes) else data)
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    if not config.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif config.assert_hostname is False:
        context.check_hostname = False
    return context


def bearer_of(config: Configuration) -> str | None:
    """The Authorization header's value (may run the configuration's refresh hook: in a thread)."""
    # The client's own auth setting (BearerToken, alias authorization), prefix included.
    token: str | None = config.get_api_key_with_prefix("BearerToken", alias="authorization")
    return token


def host_label(url: str) -> str:
    """client-go's ``host`` label: the URL's host[:port] as written (no user info); "none" if empty."""
    return urlsplit(url).netloc.rpartition("@")[2] or "none"


class RequestMetrics:
    """``rest_client_requests_total{code,method,host}`` (client-go's name, help and labels) for
    the requests to one host. The family is made once per registry: transports may share one."""

    def __init__(self, registry: CollectorRegistry, host: str) -> None:
        self._family = _requests_family(registry)
        self._host = host

    def count(self, code: str, method: str) -> None:
        self._family.labels(code=code, method=method, host=self._host).inc()


def _new_requests_family(registry: CollectorRegistry) -> Counter:
    return Counter(
        "rest_client_requests_total",
        "Number of HTTP requests, partitioned by status code, method, and host.",
        ("code", "method", "host"),
        registry=registry,
    )


_requests_family = once_per_registry(_new_requests_family)


class Credentials:
    """The bearer header, read in a thread at most every ``ttl`` seconds or after a 401."""

    def __init__(
        self,
        read: Callable[[], str | None],
        *,
        ttl: float = TOKEN_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._ttl = ttl
        self._clock = clock
        self._header: str | None = None
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._read_at is not None and self._clock() - self._read_at < self._ttl

    async def _reread(self) -> None:
        self._header = await asyncio.to_thread(self._read)
        self._read_at = self._clock()

    async def header(self) -> str | None:
        """The header to send: the one read last, unless it is ``ttl`` old (then read again)."""
        if self._fresh():
            return self._header
        async with self._lock:
            if not self._fresh():  # unless a request that held the lock just read it
                await self._reread()
            return self._header

    async def refresh(self, *, refused: str | None) -> str | None:
        """After a 401 to ``refused``: read the header again, unless another request did while
        we waited for the lock (the header differs from the refused one: use that)."""
        async with self._lock:
            if self._header == refused:
                await self._reread()
            return self._header


class ApiTransport:
    """Requests to the apiserver of ``config`` over one aiohttp session (at most ``connections``
    at once); the session is opened on the loop by the first request, closed by ``aclose``.
    With ``registry``, every request sent is counted there (``RequestMetrics``)."""

    def __init__(
        self,
        config: Configuration,
        *,
        connections: int,
        user_agent: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._config = config
        self._host = str(config.host).rstrip("/")
        self._metrics = None if registry is None else RequestMetrics(registry, host_label(self._host))
        self._connections = connections
        self._user_agent = user_agent
        self._credentials = Credentials(lambda: bearer_of(config))
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._opening = asyncio.Lock()
        self._closing: asyncio.Task[None] | None = None
        proxy = (
            config.proxy
            if config.proxy and not should_bypass_proxies(self._host, config.no_proxy or "")
            else None
        )
        self._options: dict[str, Any] = {
            "proxy": proxy,
            "proxy_headers": config.proxy_headers if proxy else None,
        }
        if config.tls_server_name:
            self._options["server_hostname"] = config.tls_server_name

    async def _open(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is not None and self._session_loop is loop and not self._session.closed:
            return self._session
        async with self._opening:
            if self._session is not None and self._session_loop is loop and not self._session.closed:
                return self._session
            self.close()  # a session of another loop (a caller that runs each request in asyncio.run)
            context = await asyncio.to_thread(ssl_context_of, self._config)
            connector = aiohttp.TCPConnector(ssl=context, limit=self._connections)
            headers = {"Accept": "application/json"}
            if self._user_agent:
                headers["User-Agent"] = self._user_agent
            self._session = aiohttp.ClientSession(connector=connector, headers=headers)
            self._session_loop = loop
            return self._session

    async def send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        content_type: str,
        body: bytes,
        *,
        deadline: Callable[[], float],
    ) -> Answer:
        """Send once (twice after a 401: with a fresh token). ``deadline`` gives the request's
        timeout in seconds, asked right before each send (the fence: it may refuse with an
        ApiError instead). Each attempt sent is counted (``_send_once``), a refused one not."""
        session = await self._open()
        header = await self._credentials.header()
        answer = await self._send_once(session, header, method, path, query, content_type, body, deadline())
        if answer.status != 401:
            return answer
        header = await self._credentials.refresh(refused=header)
        return await self._send_once(session, header, method, path, query, content_type, body, deadline())

    async def _send_once(
        self,
        session: aiohttp.ClientSession,
        authorization: str | None,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        content_type: str,
        body: bytes,
        seconds: float,
    ) -> Answer:
        headers = {"Content-Type": content_type}
        if authorization:
            headers["Authorization"] = authorization
        code = NO_ANSWER_CODE
        try:
            async with session.request(
                method,
                self._host + path,
                params=query,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=seconds),
                allow_redirects=False,
                **self._options,
            ) as response:
                code = str(response.status)  # answered, as client-go counts it, even if the body fails
                # Read in full even when nobody parses it: the connection goes back to the pool.
                data = await response.read()
                return Answer(response.status, response.reason or "", data)
        except NO_ANSWER as err:
            raise unreachable(err) from err
        finally:  # a cancelled attempt too: it may have reached the apiserver
            if self._metrics is not None:
                self._metrics.count(code, method)

    async def aclose(self) -> None:
        """Close the session and wait until its connections are closed."""
        session = self._session
        if session is not None and self._session_loop is asyncio.get_running_loop():
            self._session = None
            await session.close()
        self.close()  # a session of another loop
        closing, self._closing = self._closing, None
        if closing is not None and closing.get_loop() is asyncio.get_running_loop():
            await closing

    def close(self) -> None:
        """Close the session from sync code (``KubeApiLike.close``: the controller calls it on the
        loop once its workers are drained and the Events flushed, so no request is in flight).

        On the session's own loop the close is a task (``_closing``; ``aclose`` awaits it): its
        first step closes every connection, at the loop's next turn. Outside any loop, the
        session's loop runs the close to its end; a closed loop took the connections with it.
        """
        session, self._session = self._session, None
        loop = self._session_loop
        if session is None or session.closed or loop is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop.is_closed():
            session.detach()
        elif running is loop:
            self._closing = loop.create_task(session.close(), name="kubeapi-close")
        elif running is None and not loop.is_running():
            loop.run_until_complete(session.close())
        else:  # the session's loop runs in another thread: close it there
            asyncio.run_coroutine_threadsafe(session.close(), loop)
