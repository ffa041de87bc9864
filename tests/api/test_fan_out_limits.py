"""Fan-out through the ingress's own app (``create_api``) over a real database: a run batch
is capped and costs one request of the key's bucket per run; crons are refused when they
would fire more often than the minimum interval or pass the tenant's cron count (issue 13,
defect 4: a 5,000-run batch was accepted for one request, crons could fire every second)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_runtime.api.app_factory import create_api
from agent_runtime.config.run_settings import RunSettings
from agent_runtime.config.settings import LimitSettings
from agent_runtime.core.records import Principal, RunRecord, TenantLimits
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.tenancy.audit import CLI
from agent_runtime.tenancy.tenants import TenantAdmin
from tests.api.app_services import runtime_settings, services
from tests.backends import backend_settings

BATCH_MAX = 5
BURST = 8
MIN_INTERVAL_S = 300
CRONS_MAX = 2


@dataclass
class Orchestrator:
    """Stands in for the orchestrator handle: ``create_run`` records each run it is asked
    for and answers it as created."""

    created: list[RunCreate] = field(default_factory=list)

    @property
    def create_run(self) -> Orchestrator:
        return self

    def remote(self, principal: Principal, thread_id: str | None, body: RunCreate) -> Any:
        self.created.append(body)
        return self._created(principal, body)

    async def _created(self, principal: Principal, body: RunCreate) -> RunRecord:
        now = datetime.now(UTC)
        return RunRecord(
            run_id=f"run-{len(self.created)}",
            thread_id=f"thread-{len(self.created)}",
            tenant_id=principal.tenant_id,
            assistant_id=body.assistant_id,
            status="pending",
            created_at=now,
            updated_at=now,
        )


@dataclass
class Api:
    app: Any
    store: MetadataStore
    orchestrator: Orchestrator

    def http(self, key: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(
            transport=transport, base_url="http://test", headers={"x-api-key": key}
        )

    async def key(self, tenant_id: str) -> str:
        admin = TenantAdmin(self.store)
        if await self.store.get_tenant(tenant_id) is None:
            await admin.create_tenant(CLI, tenant_id, None)
        raw, _ = await admin.create_key(CLI, tenant_id, "test")
        return raw


@pytest.fixture(params=["sqlite", "postgres"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    async with backend_settings(request.param, tmp_path) as storage:
        settings = runtime_settings(
            storage,
            # A bucket that barely refills during a test: what a batch takes stays taken.
            limits=LimitSettings(
                redis_url=None, rate_limit_burst=BURST, rate_limit_per_second=0.01
            ),
            runs=RunSettings(
                _env_file=None,
                run_batch_max=BATCH_MAX,
                cron_min_interval_s=MIN_INTERVAL_S,
                cron_max_per_tenant=CRONS_MAX,
            ),
        )
        store = MetadataStore(storage)
        await store.setup()
        orchestrator = Orchestrator()
        parts = services(store, settings, orchestrator=orchestrator)
        try:
            yield Api(create_api(parts), store, orchestrator)
        finally:
            await parts.limiter.close()
            await store.close()


def _runs(count: int) -> list[dict[str, Any]]:
    return [{"assistant_id": "react", "input": {"n": i}} for i in range(count)]


async def test_a_batch_past_the_cap_is_refused_whole(api: Api) -> None:
    key = await api.key("acme")
    async with api.http(key) as http:
        refused = await http.post("/runs/batch", json=_runs(BATCH_MAX + 1))
        accepted = await http.post("/runs/batch", json=_runs(BATCH_MAX))
    assert refused.status_code == 422
    body = refused.json()
    assert body["error"] == "invalid_request" and body["field"] == "body"
    assert body["maximum"] == BATCH_MAX and body["requested"] == BATCH_MAX + 1
    assert f"at most {BATCH_MAX} runs" in body["detail"]
    assert "AGENT_RUN_BATCH_MAX" in body["detail"]
    # Nothing of the refused batch was started; the accepted one started every run.
    assert accepted.status_code == 200 and len(accepted.json()) == BATCH_MAX
    assert len(api.orchestrator.created) == BATCH_MAX


async def test_each_run_of_a_batch_costs_one_request(api: Api) -> None:
    key = await api.key("acme")
    async with api.http(key) as http:
        first = await http.post("/runs/batch", json=_runs(5))
        # 3 requests are left in the bucket of 8: a batch of 4 does not fit.
        second = await http.post("/runs/batch", json=_runs(4))
        single = await http.post("/runs", json=_runs(1)[0])
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Remaining"] == "3"
    assert second.status_code == 429
    body = second.json()
    assert (body["error"], body["limit"]) == ("rate_limited", "requests_per_key")
    assert int(second.headers["Retry-After"]) >= 1
    # The refused batch started nothing and took nothing but its own request.
    assert single.status_code == 200
    assert len(api.orchestrator.created) == 5 + 1
    assert single.headers["X-RateLimit-Remaining"] == "1"


async def test_a_batch_larger_than_the_keys_bucket_says_so(api: Api) -> None:
    key = await api.key("acme")
    admin = TenantAdmin(api.store)
    await admin.set_limits(CLI, "acme", TenantLimits(requests_per_minute=3))
    async with api.http(key) as http:
        refused = await http.post("/runs/batch", json=_runs(4))
    assert refused.status_code == 429
    body = refused.json()
    assert body["limit"] == "requests_per_key" and body["maximum"] == 3
    assert body["requested"] == 4 and "smaller batches" in body["detail"]
    assert api.orchestrator.created == []


@pytest.mark.parametrize(
    "schedule",
    [
        "* * * * *",  # every minute
        "*/4 * * * *",  # every 4 minutes
        "0,2 * * * *",  # twice within 2 minutes each hour
        "* * * * * *",  # every second (croniter's sixth field)
        "0 0 * * * 0,30",  # twice within 30 s, once a day
        "0,56 0,23 * * *",  # 23:56, then 00:00 the next day
    ],
)
async def test_a_cron_firing_more_often_than_the_minimum_is_422(api: Api, schedule: str) -> None:
    key = await api.key("acme")
    async with api.http(key) as http:
        refused = await http.post(
            "/runs/crons", json={"assistant_id": "react", "schedule": schedule}
        )
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["error"] == "invalid_request" and body["field"] == "schedule"
    assert f"{MIN_INTERVAL_S} s" in body["detail"]
    assert "AGENT_CRON_MIN_INTERVAL_S" in body["detail"]


async def test_schedules_at_or_above_the_minimum_pass_and_a_patch_is_checked(api: Api) -> None:
    key = await api.key("acme")
    async with api.http(key) as http:
        hourly = await http.post(
            "/runs/crons", json={"assistant_id": "react", "schedule": "0 * * * *"}
        )
        # Exactly the minimum: 23:55, then 00:00 the next day.
        edge = await http.post(
            "/runs/crons", json={"assistant_id": "react", "schedule": "0,55 0,23 * * *"}
        )
        patched = await http.patch(
            f"/runs/crons/{hourly.json()['cron_id']}", json={"schedule": "* * * * *"}
        )
        kept = await http.get(f"/runs/crons/{hourly.json()['cron_id']}")
    assert hourly.status_code == 200, hourly.text
    assert edge.status_code == 200, edge.text
    assert patched.status_code == 422 and patched.json()["field"] == "schedule"
    assert kept.json()["schedule"] == "0 * * * *"


async def test_a_tenant_has_at_most_its_cron_count(api: Api) -> None:
    key, other = await api.key("acme"), await api.key("other")
    cron = {"assistant_id": "react", "schedule": "0 * * * *"}
    async with api.http(key) as http:
        made = [await http.post("/runs/crons", json=cron) for _ in range(CRONS_MAX)]
        refused = await http.post("/runs/crons", json=cron)
        await http.delete(f"/runs/crons/{made[0].json()['cron_id']}")
        again = await http.post("/runs/crons", json=cron)
    async with api.http(other) as http:
        theirs = await http.post("/runs/crons", json=cron)
    assert [m.status_code for m in made] == [200] * CRONS_MAX
    assert refused.status_code == 429
    body = refused.json()
    assert (body["error"], body["limit"], body["maximum"]) == ("rate_limited", "crons", CRONS_MAX)
    assert f"at most {CRONS_MAX} crons" in body["detail"]
    assert again.status_code == 200  # a deleted cron frees its place
    assert theirs.status_code == 200  # another tenant counts its own
