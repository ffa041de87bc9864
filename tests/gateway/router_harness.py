"""A ``ModelRouter`` wired to the fake provider, and what it saw, for the router's tests.

The fake app is served in-process through httpx's ASGI transport; an httpx event hook
counts the requests that reach it, so a test can prove a model was skipped. Tests of
streams breaking off or stalling midway need real incremental delivery (the ASGI transport
buffers a whole response), so they serve the app under uvicorn (``tests.servers.served``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from langchain_core.messages import AIMessageChunk, HumanMessage
from pydantic import SecretStr

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.fault_profiles import FaultProfile
from agent_runtime.config.models_file import ModelsConfig
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.core.types import ChatRequest
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.breakers import BreakerRegistry, Breakers
from agent_runtime.gateway.call_observer import CallPlan, CallReport
from agent_runtime.gateway.model_router import ModelRouter

BASE_URL = "http://fake/v1"
API_KEY = "sk-router-test-secret"
ALIASES = {
    "smart": ["fake-smart", "fake-fallback"],
    "hang": ["fake-hang", "fake-fallback"],
}

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class Switchable:
    """An ASGI app that forwards to ``target``; swapping it models a provider recovering."""

    def __init__(self, target: ASGIApp) -> None:
        self.target = target

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


class Recorder:
    """A call observer that keeps every plan and report (and proves the ticket round trip)."""

    def __init__(self) -> None:
        self.plans: list[CallPlan] = []
        self.reports: list[CallReport] = []

    async def before_call(self, plan: CallPlan) -> object:
        self.plans.append(plan)
        return len(self.plans)

    async def after_call(self, plan: CallPlan, report: CallReport, ticket: object) -> None:
        assert ticket == next(i for i, p in enumerate(self.plans, 1) if p is plan)
        self.reports.append(report)


class Harness:
    """A router wired to a fake provider app, and the requests each model received."""

    def __init__(
        self, router: ModelRouter, breakers: Any, hits: Counter[str], recorder: Recorder
    ) -> None:
        self.router = router
        self.breakers = breakers
        self.hits = hits
        self.recorder = recorder
        self.bodies: list[dict[str, Any]] = []

    @property
    def report(self) -> CallReport:
        return self.recorder.reports[-1]


def fake(**overrides: Any) -> FastAPI:
    return create_fake_provider_app(FakeProviderSettings(**{"latency_ms": 0.0, **overrides}))


def faulty(**profiles: FaultProfile) -> FastAPI:
    """The fake provider with per-model fault profiles (``fake_smart=...`` for fake-smart)."""
    models = {name.replace("_", "-"): profile for name, profile in profiles.items()}
    return fake(models=models)


def provider_settings(**overrides: Any) -> ProviderSettings:
    values: dict[str, Any] = {
        "provider_api_key": SecretStr(API_KEY),
        "provider_timeout_s": 2.0,
        "model_aliases": ALIASES,
        "breaker_fail_max": 2,
        "breaker_reset_timeout_s": 30.0,
        **overrides,
    }
    return ProviderSettings(_env_file=None, **values)


@asynccontextmanager
async def harness(
    app: ASGIApp,
    base_url: str = BASE_URL,
    transport: bool = True,
    breakers: Breakers | None = None,
    models: ModelsConfig | None = None,
    **settings: Any,
) -> AsyncIterator[Harness]:
    """A router over the fake app; ``models`` replaces the config ``settings`` describe."""
    hits: Counter[str] = Counter()
    bodies: list[dict[str, Any]] = []

    async def count(request: httpx.Request) -> None:
        if request.url.path.endswith(("/chat/completions", "/embeddings")):
            body = json.loads(request.content)
            hits[body["model"]] += 1
            bodies.append(body)

    config = provider_settings(**settings)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app) if transport else None,
        base_url=base_url,
        timeout=config.provider_timeout_s,
        event_hooks={"request": [count]},
    )
    registry = breakers or BreakerRegistry(config.breaker_fail_max, config.breaker_reset_timeout_s)
    recorder = Recorder()
    router = ModelRouter(
        models or config, base_url, registry, http_client=client, observers=[recorder]
    )
    h = Harness(router, registry, hits, recorder)
    h.bodies = bodies
    try:
        yield h
    finally:
        await router.close()
        assert not client.is_closed, "a client passed in belongs to the caller"
        await client.aclose()


def ask(text: str, alias: str = "smart", **fields: Any) -> ChatRequest:
    return ChatRequest(alias=alias, messages=[HumanMessage(text)], **fields)


async def collect(stream: AsyncIterator[AIMessageChunk]) -> tuple[list[AIMessageChunk], str]:
    chunks = [chunk async for chunk in stream]
    return chunks, "".join(chunk.text for chunk in chunks)
