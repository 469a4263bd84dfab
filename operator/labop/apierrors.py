"""What an answer of the Kubernetes API means for a reconcile: the one table of error kinds.

Role: error answers (from ``transport``, or the client's exceptions) become ``ApiError`` (with
the apiserver's own message and the Status object's cause types), and ``classify`` says what
the reconciler does about each:

=======================================  ===========  =========================================
answer                                   verdict      what happens
=======================================  ===========  =========================================
404 Not Found, 410 Gone                  GONE         stop quietly: the object (or its
                                                      namespace) went away; nothing to do
403 with cause ``NamespaceTerminating``  GONE         stop quietly: the namespace is being
                                                      deleted and its LabServers with it
409 Conflict                             CONFLICT     retry at once (rate limiter's first step,
                                                      5 ms), logged at DEBUG: routine; for the
                                                      status write (its resourceVersion
                                                      precondition) no retry: the newer
                                                      version's watch event requeues the key
400 Bad Request, 422 Unprocessable       INVALID      our own object was refused: permanent
(for an object we built)                              (InvalidSpec with the apiserver's message,
                                                      no retry until the spec changes)
429, 5xx, other 403s, timeouts,          BACKOFF      temporary: retried with backoff, shown as
connection errors (status 0)                          Degraded=ReconcileError, one WARNING line
=======================================  ===========  =========================================

Anything that is not an ``ApiError`` is a bug in the operator: the worker pool logs it at
ERROR with its traceback (the only tracebacks the operator logs) and retries with backoff.
Why here and not in the reconciler: the table is the contract users read in the README, and
one function keeps the code and the table from drifting apart.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from kubernetes.client.exceptions import ApiException

NAMESPACE_TERMINATING = "NamespaceTerminating"


class ApiError(Exception):
    """An API answer (or no answer: status 0) that the reconciler reacts to by kind."""

    def __init__(self, status: int, reason: str, causes: tuple[str, ...] = ()) -> None:
        super().__init__(f"{status} {reason}" if status else reason)
        self.status = status
        self.reason = reason
        self.causes = causes  # the type of each of the Status object's details.causes


class NotFound(ApiError):
    pass


class Gone(ApiError):
    pass


class Conflict(ApiError):
    pass


class Verdict(enum.Enum):
    GONE = "gone"
    CONFLICT = "conflict"
    INVALID = "invalid"
    BACKOFF = "backoff"


def classify(err: ApiError) -> Verdict:
    """The verdict of the table above for one API answer."""
    if err.status in (404, 410):
        return Verdict.GONE
    if err.status == 403 and NAMESPACE_TERMINATING in err.causes:
        return Verdict.GONE
    if err.status == 409:
        return Verdict.CONFLICT
    if err.status in (400, 422):
        return Verdict.INVALID
    return Verdict.BACKOFF


def _status_object(body: Any) -> dict[str, Any]:
    try:
        status = json.loads(body or "")
    except (TypeError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def translate(err: ApiException) -> ApiError:
    """The client's exception as an ``ApiError`` of the right kind, with the apiserver's words."""
    return translate_answer(int(err.status or 0), err.body, str(err.reason))


def translate_answer(status: int, body: bytes | str | None, reason: str) -> ApiError:
    """An error answer (its status, body and HTTP reason phrase) as an ``ApiError`` of the right
    kind, with the apiserver's words: its Status object's message, else the reason phrase."""
    status_object = _status_object(body)
    message = str(status_object.get("message") or reason)
    details = status_object.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    # A StatusCause's type travels as "reason" on the wire (its Go field is Type, json:"reason").
    cause_types = tuple(
        str(cause.get("reason")) for cause in causes or [] if isinstance(cause, dict) and cause.get("reason")
    )
    kinds: dict[int, type[ApiError]] = {404: NotFound, 409: Conflict, 410: Gone}
    return kinds.get(status, ApiError)(status, message, cause_types)


def unreachable(err: BaseException) -> ApiError:
    """No answer at all (connection refused or reset, a timeout): status 0, retried with backoff."""
    return ApiError(0, f"API server unreachable: {type(err).__name__}: {err}")
