"""The whole ingress app, answered by the real runtime, served on a real socket, for fuzzing.

What runs is what a Serve deployment runs, minus Ray: the ingress app (``create_api``)
with the services ``IngressDeployment`` builds (``Services.open``); the orchestrator is the real
``OrchestratorDeployment`` class, constructed as Serve would (its async ``__init__``), and
the model router the real ``ModelRouter`` over the built-in fake provider (in process).
The deployment handles are replaced by :class:`LocalHandle`, which makes the same calls a
handle makes (``handle.method.remote(...)``, ``.options(stream=True)``), pickling the
arguments as a handle does. Storage is an isolated Postgres role and the real Redis.

Everything lives in one thread with its own event loop (uvicorn's), so that the schema
fuzzer's synchronous client can drive it from the test's thread.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pickle
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from pydantic import SecretStr

from agent_runtime.api.app_factory import create_api
from agent_runtime.api.deps import Services
from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.run_settings import RunSettings
from agent_runtime.config.serve_settings import ServeSettings
from agent_runtime.config.settings import (
    BudgetSettings,
    LimitSettings,
    RuntimeSettings,
    StorageSettings,
)
from agent_runtime.deployments.orchestrator import OrchestratorDeployment
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.breakers import BreakerRegistry
from agent_runtime.gateway.model_router import ModelRouter
from agent_runtime.replica.metrics import IngressMetrics
from agent_runtime.tenancy.audit import CLI
from agent_runtime.tenancy.tenants import TenantAdmin
from tests.backends import isolated_postgres
from tests.example_graphs import example_graphs

REDIS_URL = os.environ.get("AGENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN_KEY = "fuzz-bootstrap-admin-key"
FAKE_URL = "http://fake-provider/v1"


_closing: set[asyncio.Future[Any]] = set()


class _Stream:
    """An async generator as a streaming handle call returns it (iterable, cancellable)."""

    def __init__(self, generator: AsyncIterator[Any]) -> None:
        self._generator = generator

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._generator

    def cancel(self) -> None:
        close = getattr(self._generator, "aclose", None)
        if close is not None:
            task = asyncio.ensure_future(close())
            _closing.add(task)
            task.add_done_callback(_closing.discard)


class _Method:
    def __init__(self, function: Any) -> None:
        self._function = function

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))  # as a handle would
        if inspect.isasyncgenfunction(self._function):
            return _Stream(self._function(*args, **kwargs))
        return self._function(*args, **kwargs)


class LocalHandle:
    """A deployment handle's calls, answered by ``target`` in this process."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def options(self, **_: Any) -> LocalHandle:
        return self

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self._target, name))


async def _orchestrator(
    stack: AsyncExitStack, router: LocalHandle, settings: RuntimeSettings
) -> Any:
    """The deployment's class, built and closed as Serve does (async ``__init__`` and
    ``__del__``); a subclass keeps the garbage collector from calling ``__del__`` again."""
    cls: Any = OrchestratorDeployment.func_or_class

    class Local(cls):  # type: ignore[misc, valid-type]
        def __del__(self) -> None:
            return None

    orchestrator = Local.__new__(Local)
    await cls.__init__(orchestrator, router, settings)
    stack.push_async_callback(cls.__del__, orchestrator)
    return orchestrator


def stack_settings(storage: StorageSettings) -> RuntimeSettings:
    return RuntimeSettings(
        storage=storage,
        # High limits: the fuzzer must reach the routes, not the per-key bucket.
        limits=LimitSettings(
            redis_url=SecretStr(REDIS_URL),
            rate_limit_per_second=100_000,
            rate_limit_burst=100_000,
        ),
        provider=ProviderSettings(_env_file=None),
        fake=FakeProviderSettings(_env_file=None, latency_ms=0),
        serve=ServeSettings(_env_file=None),
        runs=RunSettings(_env_file=None, run_timeout_s=10, run_fallback_poll_s=0.2),
        budgets=BudgetSettings(_env_file=None, admin_api_key=SecretStr(ADMIN_KEY)),
    )


async def build_app(stack: AsyncExitStack) -> tuple[Any, str]:
    """The ingress app over the real services; (app, an API key with read and run)."""
    dsn = await stack.enter_async_context(isolated_postgres())
    storage = StorageSettings(_env_file=None, database_url=dsn, db_pool_size=4)
    settings = stack_settings(storage)
    fake = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_fake_provider_app(settings.fake)),
        base_url=FAKE_URL,
    )
    stack.push_async_callback(fake.aclose)
    policy = settings.models.breaker
    model_router = ModelRouter(
        settings.models,
        FAKE_URL,
        BreakerRegistry(policy.fail_max, policy.reset_timeout_s),
        http_client=fake,
    )
    stack.push_async_callback(model_router.close)
    router = LocalHandle(model_router)
    orchestrator = await _orchestrator(stack, router, settings)
    services = await Services.open(
        settings,
        LocalHandle(orchestrator),  # type: ignore[arg-type]
        router,  # type: ignore[arg-type]
        IngressMetrics(),
        example_graphs(),
    )
    stack.push_async_callback(services.aclose)
    admin = TenantAdmin(services.store)
    await admin.create_tenant(CLI, "fuzz", "fuzzing")
    key, _ = await admin.create_key(CLI, "fuzz", "fuzz")
    return create_api(services), key


@dataclass
class Served:
    url: str
    key: str
    errors: list[BaseException]

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.key, "x-admin-key": ADMIN_KEY}


@contextmanager
def served_stack(timeout_s: float = 60.0) -> Iterator[Served]:
    """Serve the stack from a thread of its own; yields its URL and a key. Request log
    lines are dropped (thousands of them); warnings and errors stay."""
    logging.getLogger("agent_runtime.ingress").setLevel(logging.WARNING)
    ready = threading.Event()
    state: dict[str, Any] = {}
    errors: list[BaseException] = []

    async def main() -> None:
        try:
            async with AsyncExitStack() as stack:
                app, key = await build_app(stack)
                config = uvicorn.Config(
                    app, host="127.0.0.1", port=0, log_level="critical", lifespan="off"
                )
                server = uvicorn.Server(config)
                state["server"] = server
                task = asyncio.ensure_future(server.serve())
                while not server.started:
                    assert not task.done(), "uvicorn stopped before it started"
                    await asyncio.sleep(0.01)
                port = server.servers[0].sockets[0].getsockname()[1]
                state["served"] = Served(f"http://127.0.0.1:{port}", key, errors)
                ready.set()
                await task
        except BaseException as exc:
            errors.append(exc)
            raise
        finally:
            ready.set()

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="fuzz-stack")
    thread.start()
    try:
        if not ready.wait(timeout_s) or "served" not in state:
            raise RuntimeError(f"the fuzz stack did not start: {errors!r}")
        yield state["served"]
    finally:
        server = state.get("server")
        if server is not None:
            server.should_exit = True
        thread.join(timeout_s)
