"""Ingress apps in process, on real sockets, over a real orchestrator replica: for the
tests of streams, joins and waits that must stay open (httpx's in-process transport
buffers whole answers, so each app runs under uvicorn: ``tests/servers.py``).

The orchestrator is the run harness's replica (``tests/runs/run_harness.py``: the
deployment's own :class:`Orchestration`, without Ray) behind a stand-in of its deployment
handle: each method the routes call is the deployment's, in process. Several ingress apps
over one database are several ingress replicas; with ``redis`` they share open-stream slots
and hear revocations as Serve's do (on a channel and key prefix of the test's own).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from agent_runtime.api.app_factory import create_api
from agent_runtime.api.deps import Services
from agent_runtime.config.http_settings import HttpSettings
from agent_runtime.config.settings import BudgetSettings, LimitSettings, StorageSettings
from agent_runtime.core.records import Principal, RunRecord, Scope
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.redis_client import make_redis_client
from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.runs.executor import ExecutorSettings
from agent_runtime.tenancy.audit import CLI
from agent_runtime.tenancy.auth import Authenticator, AuthInvalidations
from agent_runtime.tenancy.open_streams import OpenStreams
from agent_runtime.tenancy.stream_slots import StreamSlots
from agent_runtime.tenancy.tenants import TenantAdmin
from tests.api import app_services
from tests.runs.run_harness import OTHER, TENANT, Replica, replica
from tests.servers import served

REDIS_URL = os.environ.get("AGENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN = SecretStr("bootstrap-admin-key-for-stream-tests")


class _Stream:
    """A streaming handle call: iterated by ``iterate``; ``cancel`` stops it, as Serve's."""

    def __init__(self, events: AsyncIterator[bytes]) -> None:
        self._events = events
        self._closing: set[asyncio.Task[None]] = set()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events

    def cancel(self) -> None:
        closer = getattr(self._events, "aclose", None)
        if closer is not None:
            task = asyncio.get_running_loop().create_task(closer())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)


class _Method:
    def __init__(self, function: Callable[..., Any], streams: bool) -> None:
        self._function = function
        self._streams = streams

    def remote(self, *args: Any) -> Any:
        result = self._function(*args)
        return _Stream(result) if self._streams else result


class InProcessOrchestrator:
    """The orchestrator handle's methods the stream routes call, on a harness replica."""

    def __init__(self, r: Replica) -> None:
        runs, threads = r.runs, r.threads

        async def create_run(p: Principal, thread_id: str | None, body: RunCreate) -> RunRecord:
            return (await runs.start(p, thread_id, body, "background")).run

        def join_stream(p: Principal, t: str, run: str, last: str | None, cancel: bool) -> Any:
            return runs.join_stream(p, t, run, last_event_id=last, cancel_on_disconnect=cancel)

        def join_thread_stream(p: Principal, t: str, last: str | None, modes: Any) -> Any:
            return r.orchestration.thread_streams.join(p, t, last_event_id=last, modes=modes)

        self.create_run = _Method(create_run, streams=False)
        self.wait = _Method(runs.wait, streams=False)
        self.join = _Method(runs.join, streams=False)
        self.delete_thread = _Method(threads.delete, streams=False)
        self.stream = _Method(runs.stream, streams=True)
        self.join_stream = _Method(join_stream, streams=True)
        self.join_thread_stream = _Method(join_thread_stream, streams=True)

    def options(self, **_: Any) -> InProcessOrchestrator:
        return self


@dataclass
class Ingress:
    """One ingress replica: its app on a local port, and its services."""

    url: str
    services: Services

    def http(self, key: str | None = None, **headers: str) -> httpx.AsyncClient:
        if key:
            headers["x-api-key"] = key
        return httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )

    def admin(self) -> httpx.AsyncClient:
        return self.http(**{"x-admin-key": ADMIN.get_secret_value()})


@dataclass
class Stack:
    ingress: list[Ingress]
    orchestrator: Replica
    store: MetadataStore

    async def key(self, principal: Principal = TENANT, *scopes: Scope) -> tuple[str, str]:
        """A new key of ``principal``'s tenant: (plaintext, key id)."""
        raw, record = await TenantAdmin(self.store).create_key(
            CLI, principal.tenant_id, "streams", list(scopes) or None
        )
        return raw, record.key_id


@asynccontextmanager
async def stream_stack(
    storage: StorageSettings,
    *,
    replicas: int = 1,
    redis: bool = False,
    poll_s: float = 0.2,
    **settings: Any,
) -> AsyncIterator[Stack]:
    """``replicas`` ingress apps over one orchestrator replica; ``settings``: fields of
    ``LimitSettings`` (``max_open_streams``, ``open_streams_lease_s``) and
    ``stream_max_lifetime_s``. ``poll_s``: the thread streams' poll."""
    lifetime = settings.pop("stream_max_lifetime_s", HttpSettings().stream_max_lifetime_s)
    limits = LimitSettings(redis_url=SecretStr(REDIS_URL) if redis else None, **settings)
    channel, prefix = f"test:auth:{uuid.uuid4().hex}", f"test:streams:{uuid.uuid4().hex}:"
    executor = ExecutorSettings(heartbeat_s=0.2, lease_s=2.0, poll_s=poll_s)
    async with AsyncExitStack() as stack:
        orchestrator = await stack.enter_async_context(replica(storage, executor=executor))
        for principal in (TENANT, OTHER):
            await orchestrator.store.ensure_tenant(principal.tenant_id, "streams")
        ingress = []
        for _ in range(replicas):
            store = MetadataStore(storage)
            await store.setup()
            stack.push_async_callback(store.close)

            def bus() -> AuthInvalidations | None:
                return AuthInvalidations(REDIS_URL, 2.0, channel=channel) if redis else None

            auth = Authenticator(store, cache_ttl_s=0, invalidations=bus())
            await auth.start()
            stack.push_async_callback(auth.close)
            slots = StreamSlots(
                make_redis_client(REDIS_URL, 2.0) if redis else None,
                lease_s=limits.open_streams_lease_s,
                prefix=prefix,
            )
            streams = OpenStreams(
                slots, store, max_per_tenant=limits.max_open_streams, invalidations=bus()
            )
            await streams.start()
            stack.push_async_callback(streams.close)
            runtime = app_services.runtime_settings(
                storage,
                limits=limits,
                http=HttpSettings(stream_max_lifetime_s=lifetime),
                budgets=BudgetSettings(admin_api_key=ADMIN),
            )
            services = app_services.services(
                store,
                runtime,
                auth=auth,
                streams=streams,
                orchestrator=InProcessOrchestrator(orchestrator),
            )
            stack.push_async_callback(services.limiter.close)
            url = await stack.enter_async_context(served(create_api(services)))
            ingress.append(Ingress(url.removesuffix("/v1"), services))
        if redis:
            stack.push_async_callback(_delete_prefix, prefix)
        yield Stack(ingress, orchestrator, orchestrator.store)


async def _delete_prefix(prefix: str) -> None:
    client = make_redis_client(REDIS_URL, 2.0)
    left = [k async for k in client.scan_iter(match=prefix + "*")]
    if left:
        await client.delete(*left)
    await client.aclose()
