"""labkit.logs as the operator uses it: fields from a per-task context, in kopf's --log-format."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator

import kopf
import pytest

from labkit.logs import FIELDS_ATTR, log_context, log_event, new_reconcile_id
from labop.handlers import follow_kopf_log_format

logger = logging.getLogger("labop.test")


@pytest.fixture
def kopf_logging() -> Iterator[None]:
    """Whatever kopf.configure does to the root logger (as `kopf run` does at start), undone after."""
    root, asyncio_logger = logging.getLogger(), logging.getLogger("asyncio")
    saved = (list(root.handlers), root.level, list(asyncio_logger.handlers), asyncio_logger.propagate)
    yield
    root.handlers[:], asyncio_logger.handlers[:] = saved[0], saved[2]
    root.setLevel(saved[1])
    asyncio_logger.propagate = saved[3]


def kopf_stream(log_format: kopf.LogFormat) -> io.StringIO:
    """kopf's handler set up for ``log_format``, ours following it, writing into a buffer."""
    kopf.configure(log_format=log_format)
    assert follow_kopf_log_format()
    stream = io.StringIO()
    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "_KopfStreamHandler":
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(stream)
    return stream


def test_fields_come_from_the_context_then_from_the_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=logger.name)
    with log_context(controller="c", namespace="ns", name="a"):
        with log_context(reconcile_id="r1"):
            log_event(logger, "inside", error="boom")
        log_event(logger, "outer")
    log_event(logger, "outside")
    assert [getattr(record, FIELDS_ATTR) for record in caplog.records] == [
        {"controller": "c", "namespace": "ns", "name": "a", "reconcile_id": "r1", "error": "boom"},
        {"controller": "c", "namespace": "ns", "name": "a"},
        {},
    ]
    assert caplog.records[0].pathname == __file__, "the record names the caller's line, not labkit's"


async def test_each_task_and_its_threads_see_the_tasks_own_context(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=logger.name)

    async def reconcile(name: str) -> None:
        with log_context(name=name):
            await asyncio.sleep(0)  # the other task runs meanwhile, in its own context
            log_event(logger, "in the task")
            await asyncio.to_thread(log_event, logger, "in a thread")

    await asyncio.gather(reconcile("a"), reconcile("b"))
    seen = sorted((record.getMessage(), getattr(record, FIELDS_ATTR)["name"]) for record in caplog.records)
    assert seen == [("in a thread", "a"), ("in a thread", "b"), ("in the task", "a"), ("in the task", "b")]


def test_reconcile_ids_are_short_and_distinct() -> None:
    ids = {new_reconcile_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{8}", one) for one in ids)


@pytest.mark.usefixtures("kopf_logging")
@pytest.mark.parametrize("log_format", [kopf.LogFormat.FULL, kopf.LogFormat.PLAIN], ids=["full", "plain"])
def test_kopf_text_formats_get_key_value_pairs_after_the_message(log_format: kopf.LogFormat) -> None:
    stream = kopf_stream(log_format)
    with log_context(controller="labserver", namespace="ns", name="a", reconcile_id="0123abcd"):
        log_event(logger, "reconcile failed", logging.WARNING, error="RuntimeError: no", requeues=2)
    logger.warning("a plain line")
    first, second = stream.getvalue().splitlines()
    assert first.endswith(
        "reconcile failed controller=labserver namespace=ns name=a reconcile_id=0123abcd"
        ' error="RuntimeError: no" requeues=2'
    )
    assert second.endswith("a plain line")
    if log_format is kopf.LogFormat.FULL:
        assert "[WARNING ]" in first and "labop.test" in first


@pytest.mark.usefixtures("kopf_logging")
def test_kopf_json_format_gets_fields_and_the_object_as_kopf_names_it() -> None:
    stream = kopf_stream(kopf.LogFormat.JSON)
    with log_context(controller="labserver", namespace="ns", name="a", reconcile_id="0123abcd"):
        log_event(logger, "reconcile failed", logging.WARNING, error="RuntimeError: no", requeues=2)
    line = json.loads(stream.getvalue())
    assert line["message"] == "reconcile failed"
    assert line["severity"] == "warn"
    assert line["object"] == {"namespace": "ns", "name": "a"}
    assert (line["controller"], line["reconcile_id"], line["error"], line["requeues"]) == (
        "labserver",
        "0123abcd",
        "RuntimeError: no",
        2,
    )
    assert FIELDS_ATTR not in line


@pytest.mark.usefixtures("kopf_logging")
def test_following_kopf_twice_wraps_its_formatter_once() -> None:
    stream = kopf_stream(kopf.LogFormat.PLAIN)
    assert follow_kopf_log_format()
    log_event(logger, "once", key="v")
    assert stream.getvalue() == "once key=v\n"


@pytest.mark.usefixtures("kopf_logging")
def test_without_kopfs_handler_nothing_is_changed() -> None:
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if type(h).__name__ != "_KopfStreamHandler"]
    formatters = [h.formatter for h in root.handlers]
    assert not follow_kopf_log_format()
    assert [h.formatter for h in root.handlers] == formatters
