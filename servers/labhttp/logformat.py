"""One-line structured logs on stdout: logfmt (``key=value``) by default, JSON on request.

``cli`` (or a ``workers`` child) calls ``configure_logging`` once at start; everything else logs
through the stdlib ``logging`` module with ``log_event``, which puts the event name in the
message and the fields in ``extra``. ``observe`` writes the access line this way, ``serve`` and
``workers`` their lifecycle lines. Records from other libraries (aiohttp's error reports) get
the same shape, tracebacks folded into one escaped ``exc`` field, so every record is one line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from labhttp.settings import LogFormat

_FIELDS_ATTR = "labhttp_fields"
# Values made only of these print bare in logfmt; anything else (space, quote, "=") is quoted.
_BARE_VALUE = re.compile(r"[A-Za-z0-9\-_./:<>\[\],+@%*]+")


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured line; ``event`` names what happened, ``fields`` say the details."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={_FIELDS_ATTR: fields})


def record_fields(record: logging.LogRecord, static: Mapping[str, Any]) -> dict[str, Any]:
    """The ordered fields of one line: time, level, event, static fields, then the details."""
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "event": record.getMessage(),
    }
    if not record.name.startswith("labhttp"):
        fields["logger"] = record.name
    fields.update(static)
    fields.update(getattr(record, _FIELDS_ATTR, {}))
    if record.exc_info:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return {key: value for key, value in fields.items() if value is not None}


class LogfmtFormatter(logging.Formatter):
    """``key=value`` pairs; values with spaces, quotes or control characters are JSON-quoted."""

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        pairs = record_fields(record, self._static).items()
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in pairs)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, keys in the same order as the logfmt form."""

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record_fields(record, self._static), separators=(",", ":"), default=str)


def _logfmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if _BARE_VALUE.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def make_formatter(log_format: LogFormat, static: Mapping[str, Any] | None = None) -> logging.Formatter:
    return JsonFormatter(static) if log_format == "json" else LogfmtFormatter(static)


def configure_logging(
    log_format: LogFormat, *, stream: TextIO | None = None, static: Mapping[str, Any] | None = None
) -> None:
    """Route every logger to one handler on stdout (containers collect stdout), at INFO."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(make_formatter(log_format, static))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
