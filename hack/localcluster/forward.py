"""``python -m localcluster.forward LISTEN TARGET [--tag TEXT]``: a plain TCP forwarder.

Role: lets pods on the real node reach the apiserver. The apiserver binds 127.0.0.1 only (the
harness's and users' kubeconfigs say so, and it is not exposed on the machine's other
interfaces), and an Endpoints address may not be loopback; so it advertises the node IP
(``components.ADVERTISE_ADDRESS``), kube-proxy sends the ``kubernetes`` Service there, and this
forwarder, started with the real node, copies bytes from ``<node IP>:<apiserver port>`` to
``127.0.0.1:<apiserver port>`` (TLS passes through untouched). ``--tag`` only puts the node's
folder in the command line, so the node's teardown finds and stops this process with the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys


def _split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


async def _serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError as err:
            print(f"msg=upstream-refused target={target[0]}:{target[1]} error={err!r}", flush=True)
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, *listen)
    print(f"msg=forwarding listen={listen[0]}:{listen[1]} target={target[0]}:{target[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.forward", description=__doc__)
    parser.add_argument("listen", help="HOST:PORT to listen on")
    parser.add_argument("target", help="HOST:PORT to forward to")
    parser.add_argument("--tag", default="", help="free text (the node folder, for cleanup)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(_split(args.listen), _split(args.target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
