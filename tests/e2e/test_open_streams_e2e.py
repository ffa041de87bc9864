"""One tenant's streams on the Serve stack cannot take the API down (issue 13, defect 2):
past ``AGENT_MAX_OPEN_STREAMS`` its thread streams get 429 ``open_streams`` at once, while
``/ok`` and another tenant are answered; closed streams give their slots back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from agent_runtime.config.settings import LimitSettings
from tests.e2e.conftest import Stack
from tests.e2e.support import Api

pytestmark = pytest.mark.e2e

CAP = LimitSettings().max_open_streams
EXTRA = 12


async def _open(http: httpx.AsyncClient, path: str) -> httpx.Response:
    response = await http.send(http.build_request("GET", path), stream=True)
    if response.status_code != 200:
        await response.aread()
        await response.aclose()
    return response


async def test_a_tenant_past_its_open_streams_leaves_the_api_up(
    stack: Stack, http: httpx.AsyncClient, make_api: Callable[[], Awaitable[Api]]
) -> None:
    api, other = await make_api(), await make_api()
    thread = await api.sdk.threads.create()
    path = f"/threads/{thread['thread_id']}/stream"
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    streams = httpx.AsyncClient(
        base_url=stack.url,
        timeout=30.0,
        limits=limits,
        headers={"x-api-key": api.api_key},
        event_hooks=api.http.event_hooks,  # the tenant's keys in turn (per-key buckets)
    )
    answers: list[httpx.Response] = []
    try:
        async with asyncio.timeout(60):
            answers = list(
                await asyncio.gather(*(_open(streams, path) for _ in range(CAP + EXTRA)))
            )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * CAP + [429] * EXTRA
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.json()["limit"] == "open_streams"
        assert int(refused.headers["Retry-After"]) >= 1
        started = time.perf_counter()
        assert (await http.get("/ok")).status_code == 200
        assert time.perf_counter() - started < 2.0
        theirs = await other.sdk.threads.create()
        answer = await _open(other.http, f"/threads/{theirs['thread_id']}/stream")
        assert answer.status_code == 200
        await answer.aclose()
    finally:
        for answer in answers:
            await answer.aclose()
        await streams.aclose()
    # The client left: its slots come back (the replica sees the disconnect).
    async with asyncio.timeout(30):
        while (again := await _open(api.http, path)).status_code != 200:
            assert again.status_code == 429
            await asyncio.sleep(0.2)
    await again.aclose()
