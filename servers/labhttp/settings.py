"""Settings: the one frozen, typed configuration of a labhttp process.

``load_settings(argv, environ)`` builds it once at start from command-line flags and LABHTTP_*
environment variables (flags win over env, env wins over defaults). Nothing here reads the
environment at import time. Every other module receives a ``Settings``; ``cli`` calls
``load_settings`` and turns ``SettingsError`` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from labhttp import __version__
from labkit.logs import LogFormat

LOG_FORMATS: tuple[LogFormat, ...] = ("logfmt", "json")

DEFAULT_LISTEN = "api=0.0.0.0:8080,metrics=0.0.0.0:9090"
DEFAULT_MESSAGE = "Hello, Kubernetes and Istio!"
DEFAULT_METRICS_LISTENER = "metrics"
# Pods get terminationGracePeriodSeconds=30 by default; delay + timeout must stay well under it.
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
DEFAULT_SHUTDOWN_DELAY = 0.0
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

# Same rule as a Kubernetes container port name, so the operator can map listeners 1:1 to ports.
_LISTENER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MAX_LISTENER_NAME = 15


class SettingsError(Exception):
    """A setting is malformed or inconsistent; the message is one line meant for humans."""


@dataclass(frozen=True, slots=True)
class Listener:
    """One named listening address; each becomes its own aiohttp application and router."""

    name: str
    host: str
    port: int

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.name}={self.address}"


@dataclass(frozen=True, slots=True)
class Settings:
    listeners: tuple[Listener, ...]
    message: str = DEFAULT_MESSAGE
    # The listener that also serves /metrics: as named, else "metrics", else the first listener
    # (the LabServer CRD's rule, so the operator and the server agree).
    metrics_listener: str = DEFAULT_METRICS_LISTENER
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    shutdown_delay: float = DEFAULT_SHUTDOWN_DELAY
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log_format: LogFormat = "logfmt"
    workers: int = 1
    debug_routes: bool = False


# --- value parsers: shared by flags and env so both report errors the same way ---------------


def parse_listener(text: str) -> Listener:
    """``NAME=HOST:PORT``; HOST may be empty (all IPv4 interfaces) or a bracketed IPv6 address."""
    name, sep, address = text.strip().partition("=")
    host, colon, port_text = address.rpartition(":")
    if not sep or not colon:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=HOST:PORT, e.g. api=0.0.0.0:8080")
    if len(name) > _MAX_LISTENER_NAME or not _LISTENER_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"{text!r}: listener name must be 1-15 of a-z, 0-9 and '-', starting and ending alphanumeric"
        )
    return Listener(name=name, host=_parse_host(text, host), port=_parse_port(text, port_text))


def _parse_host(text: str, host: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: {host} is not an IPv6 address") from None
    if ":" in host:
        raise argparse.ArgumentTypeError(f"{text!r}: write IPv6 hosts in brackets, e.g. [::]:8080")
    if any(ch.isspace() for ch in host):
        raise argparse.ArgumentTypeError(f"{text!r}: host contains whitespace")
    # Go's ":8080" form from the lesson: every IPv4 interface.
    return host or "0.0.0.0"


def _parse_port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or int(port_text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: port must be a number from 0 to 65535")
    return int(port_text)


def parse_listener_list(text: str) -> tuple[Listener, ...]:
    """The LABHTTP_LISTEN form: comma-separated ``NAME=HOST:PORT`` items."""
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected at least one NAME=HOST:PORT")
    return tuple(parse_listener(item) for item in items)


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds from 0 to 3600")
    return value


def parse_positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least 1")
    return int(text)


def parse_log_format(text: str) -> LogFormat:
    if text not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected one of {', '.join(LOG_FORMATS)}")
    return text


def parse_listener_name(text: str) -> str:
    if not _LISTENER_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: not a listener name")
    return text


# --- flags -----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Reports errors as SettingsError instead of printing usage and exiting by itself."""

    def error(self, message: str) -> NoReturn:
        raise SettingsError(message)


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="labhttp",
        description="The k8s-lab HTTP server: one aiohttp application per named listener.",
        epilog="Each flag also reads the LABHTTP_* variable named in its help; flags win.",
    )
    add = parser.add_argument
    add(
        "--listen",
        action="append",
        type=parse_listener,
        metavar="NAME=HOST:PORT",
        help=f"a named listener, repeatable (LABHTTP_LISTEN, comma-separated; default {DEFAULT_LISTEN})",
    )
    add("--message", help=f"the body of GET / (LABHTTP_MESSAGE; default {DEFAULT_MESSAGE!r})")
    add(
        "--metrics-listener",
        type=parse_listener_name,
        metavar="NAME",
        help="the listener that also serves /metrics (LABHTTP_METRICS_LISTENER; "
        "default: the one named metrics, else the first)",
    )
    add(
        "--shutdown-timeout",
        type=parse_seconds,
        metavar="SECONDS",
        help="how long in-flight requests may take to finish after SIGTERM/SIGINT "
        f"(LABHTTP_SHUTDOWN_TIMEOUT; default {DEFAULT_SHUTDOWN_TIMEOUT:g})",
    )
    add(
        "--shutdown-delay",
        type=parse_seconds,
        metavar="SECONDS",
        help="keep serving this long after SIGTERM with /readyz failing, before closing listeners "
        "(LABHTTP_SHUTDOWN_DELAY; default 0)",
    )
    add(
        "--max-body-bytes",
        type=parse_positive_int,
        metavar="BYTES",
        help=f"larger request bodies get 413 (LABHTTP_MAX_BODY_BYTES; default {DEFAULT_MAX_BODY_BYTES})",
    )
    add(
        "--log-format",
        type=parse_log_format,
        metavar="{logfmt,json}",
        help="log line format on stdout (LABHTTP_LOG_FORMAT; default logfmt)",
    )
    add(
        "--workers",
        type=parse_positive_int,
        metavar="N",
        help="serving processes sharing each port via SO_REUSEPORT (LABHTTP_WORKERS; default 1)",
    )
    # Test-only: adds /debug/sleep so tests can hold a request in flight. Hidden from --help.
    add("--debug-routes", action="store_true", help=argparse.SUPPRESS)
    add("--version", action="version", version=f"labhttp {__version__}")
    return parser


# --- flags + env + defaults -> Settings ------------------------------------------------------

T = TypeVar("T")


def _pick(flag: T | None, environ: Mapping[str, str], env: str, parse: Callable[[str], T], default: T) -> T:
    if flag is not None:
        return flag
    raw = environ.get(env)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except argparse.ArgumentTypeError as exc:
        raise SettingsError(f"{env}: {exc}") from None


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Parse flags, fill gaps from the environment, then check the whole for consistency."""
    args = _build_parser().parse_args(list(argv))
    listen: list[Listener] | None = args.listen
    listeners = _pick(
        tuple(listen) if listen else None,
        environ,
        "LABHTTP_LISTEN",
        parse_listener_list,
        parse_listener_list(DEFAULT_LISTEN),
    )
    _check_unique(listeners)
    explicit_metrics = _pick(
        args.metrics_listener, environ, "LABHTTP_METRICS_LISTENER", parse_listener_name, None
    )
    return Settings(
        listeners=listeners,
        # Set but empty is an empty message (a LabServer may ask for one), not "unset".
        message=args.message if args.message is not None else environ.get("LABHTTP_MESSAGE", DEFAULT_MESSAGE),
        metrics_listener=_metrics_listener(explicit_metrics, listeners),
        shutdown_timeout=_pick(
            args.shutdown_timeout,
            environ,
            "LABHTTP_SHUTDOWN_TIMEOUT",
            parse_seconds,
            DEFAULT_SHUTDOWN_TIMEOUT,
        ),
        shutdown_delay=_pick(
            args.shutdown_delay, environ, "LABHTTP_SHUTDOWN_DELAY", parse_seconds, DEFAULT_SHUTDOWN_DELAY
        ),
        max_body_bytes=_pick(
            args.max_body_bytes, environ, "LABHTTP_MAX_BODY_BYTES", parse_positive_int, DEFAULT_MAX_BODY_BYTES
        ),
        log_format=_pick(args.log_format, environ, "LABHTTP_LOG_FORMAT", parse_log_format, "logfmt"),
        workers=_pick(args.workers, environ, "LABHTTP_WORKERS", parse_positive_int, 1),
        debug_routes=bool(args.debug_routes),
    )


def _check_unique(listeners: tuple[Listener, ...]) -> None:
    names: set[str] = set()
    ports: dict[int, Listener] = {}
    for listener in listeners:
        if listener.name in names:
            raise SettingsError(f"listener name {listener.name!r} is given twice")
        names.add(listener.name)
        # Port 0 asks the kernel for a free port, so it may repeat.
        if listener.port and listener.port in ports:
            raise SettingsError(f"listeners {ports[listener.port]} and {listener} share port {listener.port}")
        ports[listener.port] = listener


def _metrics_listener(explicit: str | None, listeners: tuple[Listener, ...]) -> str:
    names = [listener.name for listener in listeners]
    if explicit is None:
        return DEFAULT_METRICS_LISTENER if DEFAULT_METRICS_LISTENER in names else names[0]
    if explicit not in names:
        raise SettingsError(f"metrics listener {explicit!r} is not one of the listeners: {', '.join(names)}")
    return explicit
