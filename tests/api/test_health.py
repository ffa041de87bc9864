"""GET /health names what is down and answers 503; GET /ok and GET /info need nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from agent_runtime.api.app_factory import create_api
from agent_runtime.config.settings import (
    LimitSettings,
    StorageSettings,
)
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.auth import generate_key
from tests.api.app_services import runtime_settings
from tests.api.app_services import services as app_services


class Method:
    """Stands in for a deployment handle's method: ``.remote()`` gives an awaitable."""

    def __init__(self, probe: Callable[[], Awaitable[None]]) -> None:
        self._probe = probe

    def remote(self, *args: Any) -> Awaitable[None]:
        return self._probe()


class Deployment:
    def __init__(self, probe: Callable[[], Awaitable[None]]) -> None:
        self.ping = Method(probe)


async def healthy() -> None:
    return None


async def down() -> None:
    raise DependencyUnavailable("provider unreachable")


async def test_health_is_503_naming_every_part_that_is_down(tmp_path: Any) -> None:
    settings = runtime_settings(
        # Nothing listens on port 1: both the database and Redis are down.
        StorageSettings(database_url="postgresql://postgres@127.0.0.1:1/none", db_timeout_s=1),
        limits=LimitSettings(redis_url=SecretStr("redis://127.0.0.1:1/0"), redis_timeout_s=0.5),
    )
    store = MetadataStore(settings.storage)
    # Set-up reports the outage and keeps its engine, so later queries report it too.
    with pytest.raises(DependencyUnavailable):
        await store.setup()
    services = app_services(
        store, settings, orchestrator=Deployment(healthy), router=Deployment(down)
    )
    app = create_api(services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/ok")).json() == {"ok": True}
        # What Studio and Agent Chat UI probe first, with no key, as langgraph-api answers.
        info = (await client.get("/info")).json()
        response = await client.get("/health")
        # Any request with a key needs the database: a clear 503, not a 500.
        well_formed_key, _ = generate_key("t")
        runs = await client.post("/threads", json={}, headers={"x-api-key": well_formed_key})
    await services.limiter.close()
    await store.close()
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["orchestrator"] == "ok"
    assert body["checks"]["database"].startswith("down")
    assert body["checks"]["redis"].startswith("down")
    assert body["checks"]["router"].startswith("down")
    assert body["detail"] == "unavailable: database, redis, router"
    assert "127.0.0.1:1" not in response.text
    assert runs.status_code == 503
    assert runs.json()["error"] == "service_unavailable"
    assert info["version"] == metadata.version("agent-runtime")
    assert info["langgraph_py_version"] == metadata.version("langgraph")
    assert info["flags"]["assistants"] is True and info["host"]["kind"] == "self-hosted"
