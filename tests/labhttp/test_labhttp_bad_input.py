"""Requests the server must refuse: unknown paths, wrong methods, bodies over the limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.labhttp.testkit import MAX_BODY_BYTES, Listeners


async def test_an_unknown_path_is_404(listeners: Listeners) -> None:
    async with listeners.session.get(listeners.url("api", "/no/such/page")) as response:
        assert response.status == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_a_wrong_method_on_a_known_path_is_405(listeners: Listeners, method: str) -> None:
    async with listeners.session.request(method, listeners.url("api", "/health")) as response:
        assert response.status == 405
        assert "GET" in response.headers["Allow"]


async def test_a_declared_body_over_the_limit_is_413_before_it_is_read(listeners: Listeners) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    async with listeners.session.post(listeners.url("api", "/"), data=body) as response:
        assert response.status == 413


async def test_a_chunked_body_over_the_limit_is_413(listeners: Listeners) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * (MAX_BODY_BYTES // 2)

    async with listeners.session.post(listeners.url("api", "/health"), data=chunks()) as response:
        assert response.status == 413


async def test_an_oversized_body_is_refused_on_an_unknown_path_too(listeners: Listeners) -> None:
    body = b"x" * (MAX_BODY_BYTES * 4)
    async with listeners.session.put(listeners.url("metrics", "/anything"), data=body) as response:
        assert response.status == 413


async def test_a_body_within_the_limit_gets_the_routing_answer(listeners: Listeners) -> None:
    async with listeners.session.post(listeners.url("api", "/"), data=b"small") as response:
        assert response.status == 405
