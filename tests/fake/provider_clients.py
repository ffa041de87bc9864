"""The fake provider app behind an in-process ``openai`` client, and the tools its tests offer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
from fastapi import FastAPI

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.fake.provider_app import create_fake_provider_app

BASE_URL = "http://fake-provider.test/v1"
CURRENT_TIME = {
    "type": "function",
    "function": {"name": "current_time", "parameters": {"type": "object", "properties": {}}},
}


def fake_settings(**overrides: Any) -> FakeProviderSettings:
    return FakeProviderSettings(**{"latency_ms": 0.0, **overrides})


@asynccontextmanager
async def asgi_http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield http


@asynccontextmanager
async def openai_client(settings: FakeProviderSettings) -> AsyncIterator[openai.AsyncOpenAI]:
    async with asgi_http(create_fake_provider_app(settings)) as http:
        yield openai.AsyncOpenAI(
            api_key="test-key", base_url=BASE_URL, http_client=http, max_retries=0
        )


async def ask(client: openai.AsyncOpenAI, text: str, model: str = "fake-fast", **kw: Any) -> Any:
    return await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **kw
    )
