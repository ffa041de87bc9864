"""One Ray cluster and one Serve deployment of the whole stack per test session.

The stack runs on the real PostgreSQL and Redis, with the built-in fake provider as its
only faked part (behind the OpenAI wire protocol). Each test gets its own tenant and key.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from agent_runtime.config.app_settings import AppSettings
from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.run_settings import RunSettings
from agent_runtime.config.serve_settings import ServeSettings
from agent_runtime.config.settings import (
    BudgetSettings,
    EvalSettings,
    LimitSettings,
    RuntimeSettings,
    StorageSettings,
    TraceSettings,
)
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.auth import generate_key
from tests.e2e.support import Api, open_api
from tests.otlp import OtlpReceiver, otlp_receiver

ROOT = Path(__file__).resolve().parents[2]
# Must never show up in a log line or a response (tests/e2e/test_secrets.py).
PROVIDER_SECRET = "sk-e2e-provider-secret-7f3a9c"
ADMIN_SECRET = "e2e-bootstrap-admin-secret-4b81d0"
RATE_PER_S = 5.0
BURST = 20
JUDGED_GRAPH = "memory"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is ``e2e``, marked or not: one that forgot ``pytestmark`` would
    otherwise start a Ray cluster under ``-m "not e2e"``."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.e2e)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Stack:
    url: str
    settings: RuntimeSettings


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    """Where the stack's orchestrators export run traces (OTLP/HTTP, as a collector)."""
    with otlp_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def stack_settings(
    postgres_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    otlp: OtlpReceiver,
) -> RuntimeSettings:
    data_dir: Path = tmp_path_factory.mktemp("agent-data")
    return RuntimeSettings(
        storage=StorageSettings(data_dir=data_dir, database_url=postgres_url),
        limits=LimitSettings(
            redis_url=redis_url, rate_limit_per_second=RATE_PER_S, rate_limit_burst=BURST
        ),
        provider=ProviderSettings(
            provider_api_key=SecretStr(PROVIDER_SECRET),
            provider_timeout_s=5.0,
            model_aliases={
                "fast": ["fake-fast", "fake-fallback"],
                # The primary always fails: every run proves the fallback chain.
                "smart": ["fake-down", "fake-smart"],
                # Its only model always fails: an exhausted chain.
                "broken": ["fake-broken"],
            },
        ),
        fake=FakeProviderSettings(latency_ms=5.0, failing_models=["fake-down", "fake-broken"]),
        serve=ServeSettings(http_port=free_port(), metrics_port=free_port()),
        budgets=BudgetSettings(admin_api_key=SecretStr(ADMIN_SECRET)),
        trace=TraceSettings(otlp_endpoint=otlp.endpoint),
        # The cron tests schedule a run every second: no minimum interval here.
        runs=RunSettings(cron_poll_s=0.5, cron_min_interval_s=0),
        # Every run of one graph is judged online (tests/e2e/test_trace_e2e.py).
        evals=EvalSettings(sample_rate=1.0, graphs=[JUDGED_GRAPH]),
        # The example graphs, served as any app is: from their langgraph.json.
        app=AppSettings(config=ROOT / "langgraph.json"),
    )


@pytest.fixture(scope="session")
def stack(stack_settings: RuntimeSettings) -> Iterator[Stack]:
    import ray
    from ray import serve

    from agent_runtime.cli.launch import wait_until_ok
    from agent_runtime.deployments.app import run_targets

    port = stack_settings.serve.http_port
    ray.init(
        num_cpus=8,
        include_dashboard=False,
        namespace=f"agent-runtime-tests-{uuid.uuid4().hex[:6]}",
        log_to_driver=False,
        _metrics_export_port=stack_settings.serve.metrics_port,
        # Export metrics every second (Ray's default is slower): the metrics tests wait less.
        _system_config={"metrics_report_interval_ms": 1000},
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run_many(run_targets(stack_settings))
        url = f"http://127.0.0.1:{port}"
        wait_until_ok(url, timeout_s=60)
        yield Stack(url=url, settings=stack_settings)
    finally:
        serve.shutdown()
        ray.shutdown()


@dataclass
class Tenant:
    tenant_id: str
    api_key: str


@pytest.fixture
async def store(stack_settings: RuntimeSettings) -> AsyncIterator[MetadataStore]:
    metadata = MetadataStore(stack_settings.storage)
    await metadata.setup()
    yield metadata
    await metadata.close()


@pytest.fixture
async def tenant(store: MetadataStore) -> Tenant:
    """A fresh tenant with one key, so tests never share a rate-limit bucket or data."""
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    await store.ensure_tenant(tenant_id, "e2e test tenant")
    raw, record = generate_key(tenant_id, name="e2e")
    await store.add_key(record)
    return Tenant(tenant_id=tenant_id, api_key=raw)


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30.0) as client:
        yield client


@pytest.fixture
async def make_api(
    stack: Stack, store: MetadataStore
) -> AsyncIterator[Callable[[], Awaitable[Api]]]:
    """Opens clients for fresh tenants (several keys each, see tests/e2e/support.py)."""
    opened: list[Api] = []

    async def make() -> Api:
        api = await open_api(stack.url, store)
        opened.append(api)
        return api

    yield make
    for api in opened:
        await api.aclose()


@pytest.fixture
async def api(make_api: Callable[[], Awaitable[Api]]) -> Api:
    """SDK and httpx clients of a fresh tenant."""
    return await make_api()
