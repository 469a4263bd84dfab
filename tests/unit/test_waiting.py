"""tests.support.waiting.eventually: polls through the exceptions it expects, raises the rest."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes.client.exceptions import ApiException
from tests.support.waiting import NotYet, eventually
from urllib3.exceptions import MaxRetryError


def a_probe(*outcomes: object) -> Callable[[], object]:
    """A probe that raises or returns each outcome in turn, the last one forever."""
    remaining = list(outcomes)

    def probe() -> object:
        outcome = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return probe


@pytest.mark.parametrize(
    "not_yet",
    [
        ApiException(status=404),
        ConnectionRefusedError(),
        MaxRetryError(None, "/", ConnectionRefusedError()),  # type: ignore[arg-type]  # no pool needed
    ],
)
def test_an_api_answer_or_no_answer_is_polled_through(not_yet: Exception) -> None:
    assert eventually(a_probe(not_yet, None, "done"), interval=0) == "done"


@pytest.mark.parametrize("bug", [KeyError("status"), TypeError("not subscriptable"), AssertionError("no")])
def test_any_other_exception_is_raised_at_once(bug: Exception) -> None:
    with pytest.raises(type(bug)):
        eventually(a_probe(bug, "done"), timeout=60, interval=0)


def test_the_expected_exceptions_can_be_named_by_the_caller() -> None:
    probe = a_probe(KeyError("status"), "done")
    assert eventually(probe, interval=0, ignoring=(KeyError,)) == "done"
    with pytest.raises(ApiException):
        eventually(a_probe(ApiException(status=500), "done"), interval=0, ignoring=(KeyError,))


def test_a_timeout_reports_the_last_exception_polled_through() -> None:
    with pytest.raises(AssertionError, match=r"timed out .* waiting for 'the thing'; last: ApiException"):
        eventually(a_probe(ApiException(status=404)), timeout=0, interval=0, what="the thing")


def test_a_probe_says_not_yet_and_why_with_not_yet_whatever_it_ignores() -> None:
    assert eventually(a_probe(NotYet("2 problems"), "done"), interval=0, ignoring=()) == "done"
    with pytest.raises(AssertionError, match=r"last: NotYet\('2 problems'\)"):
        eventually(a_probe(NotYet("2 problems")), timeout=0, interval=0)
