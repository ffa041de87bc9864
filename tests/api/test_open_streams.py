"""Streams, joins and waits against connection exhaustion, through the ingress's own app on
real sockets over a real orchestrator replica and Postgres (and Redis where named):

* a tenant holds at most ``AGENT_MAX_OPEN_STREAMS`` of them; past it 429 ``open_streams``
  with ``Retry-After``, while ``/ok`` and other tenants are answered; a slot comes back when
  its stream ends, the client leaving included; with Redis the cap is shared by replicas;
* a stream ends cleanly past ``AGENT_STREAM_MAX_LIFETIME_S``, and the client reconnects;
* a thread's stream ends when the thread is deleted;
* streams and waits end when their key is revoked or rotated or their tenant disabled: at
  once on the replica of the admin call and, through Redis, on the others; without Redis
  within a third of ``AGENT_OPEN_STREAMS_LEASE_S``.

Before these, one key's 600 thread streams took every connection an ingress accepts and
the API stopped answering every tenant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from agent_runtime.config.http_settings import HttpSettings
from agent_runtime.config.serve_settings import DeploymentScaling, ServeSettings
from agent_runtime.config.settings import LimitSettings, StorageSettings
from agent_runtime.core.records import Principal
from tests.api.app_services import runtime_settings
from tests.api.stream_stack import Ingress, Stack, stream_stack
from tests.backends import backend_settings
from tests.runs.run_harness import GRAPH, OTHER, TENANT, new_thread
from tests.runs.test_run_service import frames

DEADLINE_S = 10.0


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[StorageSettings]:
    async with backend_settings("postgres", tmp_path) as storage:
        yield storage


class Held:
    """Streams held open by one client, as a browser tab watching threads does."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.stack = AsyncExitStack()

    async def open(self, path: str, method: str = "GET", **kwargs: object) -> httpx.Response:
        """The answer's head; a stream that was accepted stays open until :meth:`close`."""
        request = self.http.build_request(method, path, **kwargs)  # type: ignore[arg-type]
        response = await self.http.send(request, stream=True)
        if response.status_code == 200:
            self.stack.push_async_callback(response.aclose)
        else:
            await response.aread()
            await response.aclose()
        return response

    async def close(self) -> None:
        await self.stack.aclose()


async def _read_to_end(response: httpx.Response) -> list[bytes]:
    """A stream's SSE frames (heartbeats left out) until the server ends it, cleanly."""
    raw = b""
    async with asyncio.timeout(DEADLINE_S):
        async for chunk in response.aiter_bytes():
            raw += chunk
    await response.aclose()
    parts = [p + b"\r\n\r\n" for p in raw.split(b"\r\n\r\n") if p.strip()]
    return [p for p in parts if not p.startswith(b":")]


async def _opens_again(ingress: Ingress, key: str, path: str) -> None:
    """A stream is accepted again before the deadline (its slot came back)."""
    async with ingress.http(key) as http, asyncio.timeout(DEADLINE_S):
        while True:
            async with http.stream("GET", path) as response:
                if response.status_code == 200:
                    return
                assert response.status_code == 429
            await asyncio.sleep(0.05)


def _refused(response: httpx.Response, maximum: int) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "rate_limited" and body["limit"] == "open_streams"
    assert body["maximum"] == maximum and f"limit of {maximum}" in body["detail"]
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-RateLimit-Limit"] == str(maximum)


async def test_a_tenant_past_its_streams_gets_429_and_the_api_stays_up(
    postgres: StorageSettings,
) -> None:
    async with stream_stack(postgres, max_open_streams=20, poll_s=1.0) as stack:
        ingress = stack.ingress[0]
        reader, _ = await stack.key(TENANT, "read")
        other, _ = await stack.key(OTHER, "read")
        thread_id = await new_thread(stack.orchestrator)
        own = Held(ingress.http(reader))
        try:
            answers = await asyncio.gather(
                *(own.open(f"/threads/{thread_id}/stream") for _ in range(30))
            )
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [200] * 20 + [429] * 10
            _refused(next(a for a in answers if a.status_code == 429), 20)
            # While the tenant holds all it may: health, and another tenant, answered.
            async with ingress.http() as anyone:
                started = time.perf_counter()
                ok = await anyone.get("/ok")
                assert ok.status_code == 200 and time.perf_counter() - started < 2.0
            async with ingress.http(other) as someone:
                other_thread = await new_thread(stack.orchestrator, OTHER)
                async with someone.stream("GET", f"/threads/{other_thread}/stream") as theirs:
                    assert theirs.status_code == 200
            # Joins and waits count with streams.
            runner, _ = await stack.key(TENANT, "run")
            async with ingress.http(runner) as http:
                wait = await http.post(f"/threads/{thread_id}/runs/wait", json=_run())
                _refused(wait, 20)
        finally:
            # The client leaves: its streams' slots come back.
            await own.close()
        await _opens_again(ingress, reader, f"/threads/{thread_id}/stream")
    assert ingress.services.metrics.rate_limited.seen[0] == {"limit": "open_streams"}


async def test_the_cap_is_shared_by_ingress_replicas_through_redis(
    postgres: StorageSettings,
) -> None:
    async with stream_stack(postgres, replicas=2, redis=True, max_open_streams=4) as stack:
        a, b = stack.ingress
        key, _ = await stack.key()
        thread_id = await new_thread(stack.orchestrator)
        path = f"/threads/{thread_id}/stream"
        on_a, on_b = Held(a.http(key)), Held(b.http(key))
        try:
            for held in (on_a, on_a, on_b, on_b):
                assert (await held.open(path)).status_code == 200
            _refused(await on_a.open(path), 4)
            _refused(await on_b.open(path), 4)
            await on_a.close()  # A's two end: B may open two more
            assert (await on_b.open(path)).status_code == 200
            assert (await on_b.open(path)).status_code == 200
            _refused(await on_b.open(path), 4)
        finally:
            await on_a.close()
            await on_b.close()


async def test_streams_end_cleanly_past_their_lifetime_and_reconnect(
    postgres: StorageSettings,
) -> None:
    async with stream_stack(postgres, max_open_streams=1, stream_max_lifetime_s=1) as stack:
        ingress = stack.ingress[0]
        key, _ = await stack.key()
        thread_id = await new_thread(stack.orchestrator)
        async with ingress.http(key) as http:
            watch = await Held(http).open(f"/threads/{thread_id}/stream")
            assert watch.status_code == 200
            assert await _read_to_end(watch) == []  # ended, no error, the slot given back
            run = await Held(http).open(
                f"/threads/{thread_id}/runs/stream", "POST", json=_run("hang", ["custom"])
            )
            assert run.status_code == 200
            first = frames(await _read_to_end(run))
            assert [name for name, _, _ in first] == ["metadata", "custom"]
            location = run.headers["content-location"]
            # As the SDK does: reconnect where the stream stopped (here: after its first).
            again = await Held(http).open(
                run.headers["location"], headers={"Last-Event-ID": first[0][2]}
            )
            assert again.status_code == 200
            assert frames(await _read_to_end(again)) == first[1:]
            await http.post(f"{location}/cancel")


async def test_a_thread_stream_ends_when_its_thread_is_deleted(postgres: StorageSettings) -> None:
    async with stream_stack(postgres, max_open_streams=1) as stack:
        ingress = stack.ingress[0]
        key, _ = await stack.key()
        thread_id = await new_thread(stack.orchestrator)
        async with ingress.http(key) as http:
            watch = await Held(http).open(f"/threads/{thread_id}/stream")
            assert watch.status_code == 200
            ending = asyncio.ensure_future(_read_to_end(watch))
            assert (await http.delete(f"/threads/{thread_id}")).status_code == 204
            assert await ending == []
        await _opens_again(ingress, key, f"/threads/{await new_thread(stack.orchestrator)}/stream")


@pytest.mark.parametrize("replicas", ["one", "two-with-redis", "two-without-redis"])
async def test_streams_and_waits_end_when_their_key_or_tenant_is_refused(
    postgres: StorageSettings, replicas: str
) -> None:
    """The admin call goes to the first replica; the streams are on the last one."""
    count, redis = (1, False) if replicas == "one" else (2, replicas == "two-with-redis")
    async with stream_stack(
        postgres, replicas=count, redis=redis, open_streams_lease_s=1.5
    ) as stack:
        admin, streams = stack.ingress[0], stack.ingress[-1]
        revoked, revoked_id = await stack.key()
        rotated, rotated_id = await stack.key()
        kept, _ = await stack.key()
        thread_id = await new_thread(stack.orchestrator)
        waiting = await new_thread(stack.orchestrator)
        async with (
            streams.http(revoked) as by_revoked,
            streams.http(rotated) as by_rotated,
            streams.http(kept) as by_kept,
            admin.admin() as operator,
        ):
            watches = [
                await Held(http).open(f"/threads/{thread_id}/stream")
                for http in (by_revoked, by_rotated, by_kept)
            ]
            assert [w.status_code for w in watches] == [200] * 3
            ended = [asyncio.ensure_future(_read_to_end(w)) for w in watches]
            wait = asyncio.ensure_future(
                by_revoked.post(f"/threads/{waiting}/runs/wait", json=_run("hang"))
            )
            await _until_running(stack, waiting)
            assert (await operator.post(f"/admin/keys/{revoked_id}/revoke")).status_code == 200
            assert await ended[0] == []
            answer = await wait
            assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
            assert (await operator.post(f"/admin/keys/{rotated_id}/rotate")).status_code == 200
            assert await ended[1] == []
            assert not ended[2].done()  # another key of the tenant: open until...
            disabled = await operator.post(f"/admin/tenants/{TENANT.tenant_id}/disable")
            assert disabled.status_code == 200
            assert await ended[2] == []


def test_the_settings_are_validated(tmp_path: Path) -> None:
    storage = StorageSettings(data_dir=tmp_path)
    defaults = runtime_settings(storage)
    assert defaults.limits.max_open_streams < defaults.serve.ingress.max_ongoing_requests
    # One tenant holding all it may must leave a replica room for the others.
    for deployment in ("ingress", "orchestrator"):
        with pytest.raises(ValidationError, match="AGENT_MAX_OPEN_STREAMS"):
            runtime_settings(
                storage,
                limits=LimitSettings(redis_url=None, max_open_streams=64),
                serve=ServeSettings(**{deployment: DeploymentScaling(max_ongoing_requests=64)}),
            )
    for wrong in ({"max_open_streams": 0}, {"open_streams_lease_s": 0.5}):
        with pytest.raises(ValidationError):
            LimitSettings(redis_url=None, **wrong)
    with pytest.raises(ValidationError):
        HttpSettings(stream_max_lifetime_s=0)


async def _until_running(stack: Stack, thread_id: str, principal: Principal = TENANT) -> None:
    runs = stack.ingress[0].services.runs
    async with asyncio.timeout(DEADLINE_S):
        while True:
            found = await runs.search(principal.tenant_id, thread_id, limit=1, offset=0)
            if found and found[0].status == "running":
                return
            await asyncio.sleep(0.05)


def _run(mode: str = "ok", stream_mode: list[str] | None = None) -> dict[str, object]:
    created: dict[str, object] = {"assistant_id": GRAPH, "input": {"steps": [], "mode": mode}}
    if stream_mode:
        created["stream_mode"] = stream_mode
    return created
