"""labop.apierrors: each API answer's verdict, as the README's table of error kinds says."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from labop.apierrors import (
    ApiError,
    Conflict,
    Gone,
    NotFound,
    Verdict,
    classify,
    translate,
    translate_answer,
    unreachable,
)


def an_answer(status: int, message: str, causes: list[dict[str, str]] | None = None) -> ApiException:
    err = ApiException(status=status, reason="Reason")
    body: dict[str, object] = {"kind": "Status", "message": message}
    if causes is not None:
        body["details"] = {"causes": causes}
    err.body = json.dumps(body)
    return err


@pytest.mark.parametrize(
    ("status", "kind", "verdict"),
    [
        (404, NotFound, Verdict.GONE),
        (410, Gone, Verdict.GONE),
        (409, Conflict, Verdict.CONFLICT),
        (400, ApiError, Verdict.INVALID),
        (422, ApiError, Verdict.INVALID),
        (403, ApiError, Verdict.BACKOFF),
        (429, ApiError, Verdict.BACKOFF),
        (500, ApiError, Verdict.BACKOFF),
        (503, ApiError, Verdict.BACKOFF),
        (504, ApiError, Verdict.BACKOFF),
    ],
)
def test_each_status_gets_its_kind_and_verdict(status: int, kind: type[ApiError], verdict: Verdict) -> None:
    err = translate(an_answer(status, "the apiserver's words"))
    assert type(err) is kind
    assert (err.status, err.reason) == (status, "the apiserver's words")
    assert classify(err) is verdict


def test_a_namespace_being_terminated_means_stop_quietly() -> None:
    answer = an_answer(
        403,
        'deployments.apps "x" is forbidden: unable to create new content in namespace t'
        " because it is being terminated",
        [
            {
                "reason": "NamespaceTerminating",
                "message": "namespace t is being terminated",
                "field": "metadata.namespace",
            }
        ],
    )
    err = translate(answer)
    assert err.causes == ("NamespaceTerminating",)
    assert classify(err) is Verdict.GONE


def test_no_answer_at_all_is_retried_with_backoff() -> None:
    err = unreachable(ConnectionRefusedError(111, "Connection refused"))
    assert err.status == 0 and "Connection refused" in str(err)
    assert classify(err) is Verdict.BACKOFF


def test_a_body_that_is_not_a_status_falls_back_to_the_http_reason() -> None:
    answer = ApiException(status=502, reason="Bad Gateway")
    answer.body = "<html>proxy error</html>"
    assert translate(answer).reason == "Bad Gateway"


def test_an_answer_as_the_transport_returns_it_gets_the_same_kind_and_words_as_the_clients_exception() -> (
    None
):
    causes = [{"reason": "NamespaceTerminating", "message": "namespace t is being terminated"}]
    raw = json.dumps({"kind": "Status", "message": "forbidden", "details": {"causes": causes}}).encode()
    err = translate_answer(403, raw, "Forbidden")
    assert (type(err), err.status, err.reason, err.causes) == (
        ApiError,
        403,
        "forbidden",
        ("NamespaceTerminating",),
    )
    assert type(translate_answer(409, b'{"message": "modified"}', "Conflict")) is Conflict
    assert translate_answer(502, b"<html>proxy error</html>", "Bad Gateway").reason == "Bad Gateway"
