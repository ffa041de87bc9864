"""Fair use through the ingress's own app (``create_api``) over real databases and Redis:
rate-limit headers on every answer to a key, 429s naming their limit with ``Retry-After``,
tenant overrides, and both failure modes of an unreachable Redis (authentication still
works either way)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from agent_runtime.api.app_factory import create_api
from agent_runtime.api.deps import Services
from agent_runtime.config.settings import LimitSettings
from agent_runtime.core.errors import RateLimited
from agent_runtime.core.records import TenantLimits
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.tenancy.audit import CLI
from agent_runtime.tenancy.tenants import TenantAdmin
from agent_runtime.tenancy.token_buckets import build_limiter
from tests.api.admin_app import admin_settings
from tests.api.app_services import services as app_services
from tests.backends import backend_settings

REDIS_URL = os.environ.get("AGENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEAD_REDIS = "redis://:dead-redis-password@127.0.0.1:1/0"


class Counter:
    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.seen.append(tags or {})


class Metrics:
    def __init__(self) -> None:
        self.rate_limited = Counter()
        self.unavailable: list[tuple[str, str]] = []

    def observe(self, *args: Any) -> None:
        return None

    def record_limiter_unavailable(self, limit: str, mode: str) -> None:
        self.unavailable.append((limit, mode))


class Orchestrator:
    """Stands in for the orchestrator handle: ``create_run`` refuses as the run store does
    when a tenant's concurrent runs are all taken."""

    class _Method:
        async def _refuse(self) -> Any:
            raise RateLimited(
                "concurrent runs limit of 2 for this tenant reached (2 running)",
                retry_after=5.0,
                limit="concurrent_runs",
                maximum=2,
                remaining=0,
            )

        def remote(self, *args: Any) -> Any:
            return self._refuse()

    create_run = _Method()


@dataclass
class Api:
    app: Any
    store: MetadataStore
    metrics: Metrics

    def http(self, key: str | None = None) -> httpx.AsyncClient:
        headers = {"x-api-key": key} if key else {}
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)

    async def key(self, tenant_id: str, limits: TenantLimits | None = None) -> str:
        admin = TenantAdmin(self.store)
        if await self.store.get_tenant(tenant_id) is None:
            await admin.create_tenant(CLI, tenant_id, None)
        if limits is not None:
            await admin.set_limits(CLI, tenant_id, limits)
        raw, _ = await admin.create_key(CLI, tenant_id, "test")
        return raw


@pytest.fixture
async def make_api(tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[tuple[Services, MetadataStore]] = []

    async def make(backend: str = "postgres", **limits: Any) -> Api:
        storage = await stack.enter_async_context(backend_settings(backend, tmp_path / backend))
        settings = admin_settings(storage)
        settings.limits = LimitSettings(**{"redis_url": SecretStr(REDIS_URL), **limits})
        store = MetadataStore(storage)
        await store.setup()
        metrics = Metrics()
        prefix = f"test:routes-rl:{uuid.uuid4().hex}:"
        services = app_services(
            store,
            settings,
            limiter=build_limiter(
                settings.limits, prefix=prefix, on_unavailable=metrics.record_limiter_unavailable
            ),
            orchestrator=Orchestrator(),
            metrics=metrics,
        )
        opened.append((services, store))
        return Api(create_api(services), store, metrics)

    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        yield make
        for services, store in opened:
            await services.limiter.close()
            await store.close()
    client = make_redis_client(REDIS_URL, 2.0)
    keys = [k async for k in client.scan_iter(match="test:routes-rl:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_every_answer_to_a_key_carries_its_limit(make_api: Any, backend: str) -> None:
    api: Api = await make_api(backend, rate_limit_burst=5, rate_limit_per_second=0.01)
    key = await api.key("acme")
    async with api.http(key) as http:
        answers = [await http.get("/assistants/react") for _ in range(5)]
        answers.append(await http.get("/threads/not-a-uuid"))  # an error answer too
    assert [a.status_code for a in answers[:5]] == [200] * 5
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:5]] == ["4", "3", "2", "1", "0"]
    refused = answers[5]
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert refused.json()["limit"] == "requests_per_key"
    assert "5 requests" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Limit"] == "5"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) >= 1
    assert api.metrics.rate_limited.seen == [{"limit": "requests_per_key"}]


async def test_a_tenants_requests_per_minute_wins(make_api: Any) -> None:
    api: Api = await make_api()
    slow = await api.key("slow", TenantLimits(requests_per_minute=2))
    fast = await api.key("fast")
    async with api.http(slow) as http:
        statuses = [(await http.get("/assistants/react")).status_code for _ in range(3)]
        limited = await http.get("/assistants/react")
    assert statuses == [200, 200, 429]
    assert limited.headers["X-RateLimit-Limit"] == "2"
    assert 25 <= int(limited.headers["Retry-After"]) <= 30  # one request every 30 s
    async with api.http(fast) as http:
        answer = await http.get("/assistants/react")
    assert answer.headers["X-RateLimit-Limit"] == "100"  # the default burst


async def test_a_run_limit_refusal_carries_that_limits_headers(make_api: Any) -> None:
    api: Api = await make_api()
    key = await api.key("acme")
    async with api.http(key) as http:
        answer = await http.post("/runs", json={"assistant_id": "react", "input": {}})
    assert answer.status_code == 429
    body = answer.json()
    assert (body["error"], body["limit"], body["maximum"]) == ("rate_limited", "concurrent_runs", 2)
    assert answer.headers["Retry-After"] == "5"
    assert answer.headers["X-RateLimit-Limit"] == "2"
    assert answer.headers["X-RateLimit-Remaining"] == "0"


@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
async def test_redis_unreachable(
    make_api: Any, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    api: Api = await make_api(
        redis_url=SecretStr(DEAD_REDIS),
        redis_timeout_s=0.5,
        rate_limit_failure_mode=mode,
        rate_limit_burst=3,
        rate_limit_per_second=0.01,
    )
    key = await api.key("acme")
    async with api.http(key) as http:
        answers = [await http.get("/assistants/react") for _ in range(4)]
    async with api.http("ar_0123456789ab_" + "x" * 43) as http:
        forged = await http.get("/assistants/react")
    assert forged.status_code == 401  # authentication does not need Redis
    if mode == "fail_open":
        # Limited in process: the burst of 3, then refused, nothing refused for Redis.
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[0].headers["X-RateLimit-Remaining"] == "2"
    else:
        assert {a.status_code for a in answers} == {503}
        body = answers[0].json()
        assert body["error"] == "service_unavailable"
        assert body["limit"] == "requests_per_key" and "fail_closed" in body["detail"]
        assert int(answers[0].headers["Retry-After"]) >= 1
        assert answers[0].headers["X-RateLimit-Remaining"] == "0"
    assert api.metrics.unavailable == [("requests_per_key", mode)] * 4
    assert "Redis unreachable" in caplog.text
    for answer in [*answers, forged]:
        assert "dead-redis-password" not in answer.text
    assert "dead-redis-password" not in caplog.text
