"""Fixtures for the graph tests: chat models that talk to the fake provider over ASGI.

The graphs get real ``ChatOpenAI`` clients speaking the OpenAI wire protocol; only the
model behind it is fake (deterministic, see ``agent_runtime.fake.fake_model``). Each alias maps to
the fake model of the same name, as the default router configuration does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.execution.graph_registry import ModelFactory
from agent_runtime.fake.provider_app import create_fake_provider_app

FAKE_BASE_URL = "http://fake/v1"
MODEL_FOR_ALIAS = {"fast": "fake-fast", "smart": "fake-smart"}


@pytest.fixture
def fake_app() -> FastAPI:
    # Every fault field is set so AGENT_FAKE_* variables in the environment cannot leak in.
    settings = FakeProviderSettings(
        latency_ms=0, jitter_ms=0, fail_rate=0, failing_models=[], hanging_models=[], seed=0
    )
    return create_fake_provider_app(settings)


@pytest.fixture
async def fake_http(fake_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake_app), base_url=FAKE_BASE_URL, timeout=10.0
    ) as client:
        yield client


@pytest.fixture
def models(fake_http: httpx.AsyncClient) -> ModelFactory:
    def factory(alias: str) -> BaseChatModel:
        return ChatOpenAI(
            model=MODEL_FOR_ALIAS[alias],
            base_url=FAKE_BASE_URL,
            api_key="k",
            max_retries=0,
            timeout=10.0,
            http_async_client=fake_http,
        )

    return factory


@pytest.fixture
def checkpointer() -> InMemorySaver:
    return InMemorySaver()


@pytest.fixture
def thread() -> RunnableConfig:
    return {"configurable": {"thread_id": f"test-{uuid.uuid4().hex}"}}
