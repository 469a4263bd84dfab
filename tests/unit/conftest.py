"""Captured log records render as the operator writes them in kopf's plain format: the message,
then the fields of ``labkit.logs`` as ``key=value`` (so tests assert on the line users read)."""

from __future__ import annotations

import pytest

from labkit.logs import with_fields


@pytest.fixture(autouse=True)
def log_lines_with_fields(caplog: pytest.LogCaptureFixture) -> None:
    with_fields(caplog.handler, json_lines=False)
