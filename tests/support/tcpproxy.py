"""A tiny TCP proxy in front of the apiserver for one process, which a test can cut off and restore.

Why: to cut one operator replica off from the apiserver (a network partition) while the others
still reach it; stopping the apiserver would cut everybody. The proxy runs its own asyncio loop
in a thread; ``pause`` closes every connection through it and refuses new ones until ``resume``.
TLS passes through untouched (the apiserver's certificate names 127.0.0.1, whatever the port).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import yaml
from localcluster.cluster import free_port


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.paused = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcpproxy", daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop
        ).result(timeout=10)

    def stop(self) -> None:
        self.pause()
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def pause(self) -> None:
        """Cut: every open connection is closed, new ones are closed as soon as they arrive."""
        self.paused = True
        asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(timeout=10)

    def resume(self) -> None:
        self.paused = False

    async def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.paused:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
        self._writers.discard(writer)


def kubeconfig_through(proxy: TcpProxy, kubeconfig: Path, target: Path) -> Path:
    """A copy of ``kubeconfig`` whose clusters' server is the proxy's port on 127.0.0.1."""
    config = yaml.safe_load(kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    target.write_text(yaml.safe_dump(config))
    return target


def upstream_of(kubeconfig: Path) -> tuple[str, int]:
    """The host and port of the kubeconfig's first cluster's server."""
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").split("/")[0].rsplit(":", 1)
    return host, int(port)
