"""A model router for evaluations outside the stack: no Ray, the fake provider in process.

:func:`local_router` builds a real :class:`~agent_runtime.gateway.model_router.ModelRouter` from a
models file, or from the built-in default (the fake provider's models and the ``fast``/``smart``
aliases, read from no environment variable, so runs are the same everywhere). The built-in
fake provider is served in process through httpx's ASGI transport, mounted at
:data:`FAKE_ORIGIN`; any other provider of the models file is called over the network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from langchain_core.language_models import BaseChatModel

from agent_runtime.config.builtin_models import builtin_config
from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.models_file import ModelsConfig, load
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.execution.chat_model import RouterChatModel
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.model_router import ModelRouter

FAKE_ORIGIN = "http://fake-provider.eval"
FAKE_BASE_URL = f"{FAKE_ORIGIN}/v1"


def default_models() -> ModelsConfig:
    """The runtime's default models config (models.yaml), whatever the environment says."""
    return builtin_config(ProviderSettings.model_construct())


def quiet_fake() -> FakeProviderSettings:
    """The fake provider without latency or faults (every field set: AGENT_FAKE_* ignored)."""
    return FakeProviderSettings(
        _env_file=None,
        latency_ms=0,
        jitter_ms=0,
        fail_rate=0,
        failing_models=[],
        hanging_models=[],
        default_profile=None,
        models={},
        control_enabled=False,
        control_token=None,
        seed=0,
    )


@asynccontextmanager
async def local_router(
    models_file: str | Path | None = None, *, fake: FakeProviderSettings | None = None
) -> AsyncIterator[ModelRouter]:
    """A router over ``models_file`` (default: :func:`default_models`), closed on exit."""
    config = load(models_file) if models_file is not None else default_models()
    app = create_fake_provider_app(fake or quiet_fake())
    client = httpx.AsyncClient(
        mounts={FAKE_ORIGIN: httpx.ASGITransport(app=app)},
        timeout=httpx.Timeout(60.0, connect=5.0),
    )
    router = ModelRouter(config, FAKE_BASE_URL, http_client=client)
    try:
        yield router
    finally:
        await router.close()
        await client.aclose()


def router_model(router: ModelRouter, alias: str) -> BaseChatModel:
    """A chat model whose calls go to ``router`` (as graphs' models do in the service)."""
    return RouterChatModel(alias=alias, call=router.chat)


def describe(models_file: str | Path | None) -> str:
    return f"models file {models_file}" if models_file is not None else "fake provider (in process)"
