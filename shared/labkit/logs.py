"""One logging setup for the operator and labhttp: an event name plus fields, plain or JSON.

Code logs through the stdlib ``logging`` module with ``log_event(logger, "event", **fields)``: the
event is the message, the fields go into the record (``extra``), together with the fields bound
by ``log_context`` for the task at hand (contextvars: each asyncio task, and each thread started
with ``asyncio.to_thread``, sees its own). The operator's worker pool binds ``controller``,
``namespace``, ``name`` and a short random ``reconcile_id`` around every reconcile, so every line
of that pass carries them without the code saying so.

How the fields are written depends on the process:

- labhttp (``configure_logging``): ``LogfmtFormatter`` (``ts=... level=... event=... key=value``)
  or ``JsonFormatter`` (one object per line, keys in the same order), on stdout;
- the operator (``with_fields``): kopf owns the handler and its ``--log-format`` (plain, full or
  json); the formatter kopf chose is wrapped, so kopf's own lines do not change and ours get the
  fields: appended as ``key=value`` to the message in plain and full, added as JSON fields in json
  (``namespace`` and ``name`` under kopf's object reference key, as kopf's own lines have them).

Values print bare in ``key=value`` when they are made of safe characters, else JSON-quoted, so
every record stays one line (a traceback is folded into one escaped ``exc`` field).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, TextIO

LogFormat = Literal["logfmt", "json"]

FIELDS_ATTR = "labkit_fields"
_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("labkit_log_context", default=MappingProxyType({}))
# Values made only of these print bare in key=value; anything else (space, quote, "=") is quoted.
_BARE_VALUE = re.compile(r"[A-Za-z0-9\-_./:<>\[\],+@%*]+")
# Where kopf's JSON lines keep an object's identity (kopf's --log-refkey, default "object").
_DEFAULT_REFKEY = "object"


def log_event(
    logger: logging.Logger | logging.LoggerAdapter[Any],
    event: str,
    level: int = logging.INFO,
    *,
    exc_info: BaseException | None = None,
    stacklevel: int = 1,
    **fields: Any,
) -> None:
    """Log one line: ``event`` says what happened, the context's and these ``fields`` the details.

    ``stacklevel`` as ``logging``'s, counted from the caller (the record names the caller's line).
    """
    if logger.isEnabledFor(level):
        merged = {**_CONTEXT.get(), **fields}
        logger.log(level, event, exc_info=exc_info, extra={FIELDS_ATTR: merged}, stacklevel=stacklevel + 1)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every ``log_event`` of this task (and the threads it starts) inside."""
    token = _CONTEXT.set(MappingProxyType({**_CONTEXT.get(), **fields}))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def new_reconcile_id() -> str:
    """A short random id that tells one reconcile's lines from another's (8 hex digits)."""
    return secrets.token_hex(4)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The record's fields (context first), those that are None left out."""
    fields: Mapping[str, Any] = getattr(record, FIELDS_ATTR, {})
    return {key: value for key, value in fields.items() if value is not None}


def logfmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if _BARE_VALUE.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def logfmt(fields: Mapping[str, Any]) -> str:
    """``key=value`` pairs, separated by spaces."""
    return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields.items())


def _exception_text(record: logging.LogRecord) -> str | None:
    return logging.Formatter().formatException(record.exc_info) if record.exc_info else None


def line_fields(record: logging.LogRecord, static: Mapping[str, Any], own: str | None) -> dict[str, Any]:
    """The ordered fields of one whole line: time, level, event, logger, static ones, the record's."""
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "event": record.getMessage(),
    }
    if own is None or not record.name.startswith(own):
        fields["logger"] = record.name
    fields.update(static)
    fields.update(fields_of(record))
    fields["exc"] = _exception_text(record)
    return {key: value for key, value in fields.items() if value is not None}


class LogfmtFormatter(logging.Formatter):
    """Whole lines of ``key=value``: ``ts``, ``level``, ``event``, then the fields.

    ``logger`` is added for records of loggers outside ``own`` (e.g. aiohttp's error reports).
    """

    def __init__(self, static: Mapping[str, Any] | None = None, *, own: str | None = None) -> None:
        super().__init__()
        self._static = dict(static or {})
        self._own = own

    def format(self, record: logging.LogRecord) -> str:
        return logfmt(line_fields(record, self._static, self._own))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, keys in the same order as ``LogfmtFormatter``'s."""

    def __init__(self, static: Mapping[str, Any] | None = None, *, own: str | None = None) -> None:
        super().__init__()
        self._static = dict(static or {})
        self._own = own

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(line_fields(record, self._static, self._own), separators=(",", ":"), default=str)


def make_formatter(
    log_format: LogFormat, static: Mapping[str, Any] | None = None, *, own: str | None = None
) -> logging.Formatter:
    return JsonFormatter(static, own=own) if log_format == "json" else LogfmtFormatter(static, own=own)


def configure_logging(
    log_format: LogFormat,
    *,
    stream: TextIO | None = None,
    static: Mapping[str, Any] | None = None,
    own: str | None = None,
) -> None:
    """Route every logger to one handler on stdout (containers collect stdout), at INFO."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(make_formatter(log_format, static, own=own))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class FieldsFormatter(logging.Formatter):
    """Another formatter (kopf's), with the record's fields added in that formatter's style.

    Text (kopf's plain and full): `` key=value`` pairs appended to the message. JSON (kopf's json,
    a python-json-logger formatter, which writes a record's extra attributes as fields): the
    fields become attributes, ``namespace`` and ``name`` under ``refkey`` as kopf's own lines
    have their object's. A record without fields is passed through untouched.
    """

    def __init__(self, inner: logging.Formatter, *, json_lines: bool, refkey: str | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.json_lines = json_lines
        self.refkey = refkey or _DEFAULT_REFKEY

    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        if not fields:
            return self.inner.format(record)
        record = copy.copy(record)  # other handlers see the record as it was
        delattr(record, FIELDS_ATTR)
        if self.json_lines:
            ref = {key: fields.pop(key) for key in ("namespace", "name") if key in fields}
            if ref:
                fields[self.refkey] = ref
            for key, value in fields.items():
                # A field never replaces the record's own attributes (its message, its level).
                setattr(record, key if key not in record.__dict__ else f"field_{key}", value)
        else:
            record.msg, record.args = f"{record.getMessage()} {logfmt(fields)}", None
        return self.inner.format(record)

    def formatException(self, ei: Any) -> str:
        return self.inner.formatException(ei)


def with_fields(handler: logging.Handler, *, json_lines: bool, refkey: str | None = None) -> None:
    """Wrap ``handler``'s formatter (once) so that records' fields are written in its style."""
    current = handler.formatter or logging.Formatter()
    if isinstance(current, FieldsFormatter):
        return
    handler.setFormatter(FieldsFormatter(current, json_lines=json_lines, refkey=refkey))
