"""One structured line per request (logfmt by default, JSON on request), and every record one line."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from tests.labhttp.testkit import Listeners

from labhttp.metrics import UNMATCHED_ROUTE
from labkit.logs import FIELDS_ATTR, JsonFormatter, LogfmtFormatter, configure_logging, log_event


@pytest.fixture
def stdout() -> Iterator[io.StringIO]:
    """The root logging setup the CLI makes, pointed at a buffer, undone afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("json", stream=stream, own="labhttp")
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def access_lines(stream: io.StringIO) -> list[dict[str, object]]:
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [record for record in records if record["event"] == "request"]


async def test_each_request_writes_one_access_line(listeners: Listeners, stdout: io.StringIO) -> None:
    async with listeners.session.get(listeners.url("api", "/health"), headers={"User-Agent": "probe"}) as r:
        await r.read()

    [line] = access_lines(stdout)
    assert line["listener"] == "api"
    assert line["method"] == "GET"
    assert line["path"] == "/health"
    assert line["route"] == "/health"
    assert line["status"] == 200
    assert line["bytes"] == len("Server is healthy")
    assert line["remote"] == "127.0.0.1"
    assert line["user_agent"] == "probe"
    assert isinstance(line["duration_ms"], float)


async def test_refused_requests_are_logged_with_their_status(
    listeners: Listeners, stdout: io.StringIO
) -> None:
    async with listeners.session.get(listeners.url("metrics", "/missing")) as response:
        await response.read()
    async with listeners.session.post(listeners.url("api", "/"), data=b"x" * 5000) as response:
        await response.read()

    lines = access_lines(stdout)
    assert [(line["listener"], line["route"], line["status"]) for line in lines] == [
        ("metrics", UNMATCHED_ROUTE, 404),
        # POST matches no route (GET only), and the size check comes before the 405.
        ("api", UNMATCHED_ROUTE, 413),
    ]


def make_record(event: str, **fields: object) -> logging.LogRecord:
    logger = logging.getLogger("labhttp.test")
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, event, (), None)
    setattr(record, FIELDS_ATTR, fields)
    return record


def test_logfmt_quotes_only_the_values_that_need_it() -> None:
    record = make_record("request", path="/a b", route="<unmatched>", status=200, ok=True, ms=1.23456)
    line = LogfmtFormatter(own="labhttp").format(record)
    assert line.startswith("ts=")
    assert ' level=info event=request path="/a b" route=<unmatched> status=200 ok=true ms=1.235' in line


def test_logfmt_escapes_quotes_and_equals_signs() -> None:
    line = LogfmtFormatter(own="labhttp").format(make_record("x", ua='say "hi"', query="a=b", empty=""))
    assert 'ua="say \\"hi\\"" query="a=b" empty=""' in line


def test_json_lines_keep_the_same_fields_in_the_same_order() -> None:
    record = json.loads(JsonFormatter({"worker": 1}, own="labhttp").format(make_record("serving", pid=7)))
    assert list(record) == ["ts", "level", "event", "worker", "pid"]
    assert record["ts"].endswith("Z")


def test_a_traceback_is_folded_into_one_line() -> None:
    logger = logging.getLogger("aiohttp.server")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logger.makeRecord(
        logger.name, logging.ERROR, __file__, 1, "Error handling request", (), exc_info
    )
    for formatter in (LogfmtFormatter(own="labhttp"), JsonFormatter(own="labhttp")):
        line = formatter.format(record)
        assert "\n" not in line
        assert "RuntimeError: boom" in line
        assert "aiohttp.server" in line


def test_log_event_skips_fields_that_are_none(stdout: io.StringIO) -> None:
    log_event(logging.getLogger("labhttp.test"), "thing", present=1, absent=None)
    record = json.loads(stdout.getvalue())
    assert record["present"] == 1
    assert "absent" not in record
