"""The OpenAI-compatible gateway with the official ``openai`` client, no Ray: the ingress's
own app (``create_api``) in process, its router handle replaced by a real ``ModelRouter``
on a models config, calling the fake provider served by uvicorn on a real socket.

(tests/e2e/test_openai_gateway.py runs the same client against the deployed stack.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from agent_runtime.api.app_factory import create_api
from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.fault_profiles import FaultProfile
from agent_runtime.config.models_file import ModelsConfig, ModelSpec, ProviderConfig, Timeouts
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.types import ChatRequest
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.fake.fake_embed import fake_embedding
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.model_router import ModelRouter
from agent_runtime.tenancy.auth import generate_key
from tests.api.app_services import runtime_settings
from tests.api.app_services import services as app_services
from tests.servers import served
from tests.tool_specs import CALCULATOR


def models_config() -> ModelsConfig:
    fake = ProviderConfig(kind="fake", timeouts=Timeouts(request_s=5, first_token_s=1, idle_s=1))
    return ModelsConfig(
        providers={"fake": fake},
        models={
            "primary": ModelSpec(provider="fake", model_id="fake-down"),
            "cut": ModelSpec(provider="fake", model_id="fake-cut"),
            "fake-fallback": ModelSpec(
                provider="fake", input_per_million_usd=1, output_per_million_usd=2
            ),
            "embed-down": ModelSpec(provider="fake", model_id="fake-down"),
            "fake-embed": ModelSpec(provider="fake"),
        },
        aliases={
            "smart": ["primary", "fake-fallback"],
            "brittle": ["cut", "fake-fallback"],
            "embedder": ["embed-down", "fake-embed"],
        },
    )


class _Stream:
    """What a streaming ``DeploymentHandle`` call returns: an async iterator, cancellable."""

    def __init__(self, chunks: AsyncIterator[Any]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._chunks

    def cancel(self) -> None:
        return None


class _Method:
    def __init__(self, fn: Callable[[ChatRequest], Any], stream: bool) -> None:
        self._fn, self._stream = fn, stream

    def remote(self, request: ChatRequest) -> Any:
        result = self._fn(request)
        return _Stream(result) if self._stream else result


class LocalRouterHandle:
    """Stands in for the router's ``DeploymentHandle``: calls a ``ModelRouter`` in process."""

    def __init__(self, router: ModelRouter, stream: bool = False) -> None:
        self._router, self._streaming = router, stream
        self.chat = _Method(router.chat, stream)
        self.stream = _Method(router.stream, stream)
        self.embed = _Method(router.embed, stream)

    def options(self, stream: bool = False) -> LocalRouterHandle:
        return LocalRouterHandle(self._router, stream)


@dataclass
class Gateway:
    client: openai.AsyncOpenAI
    config: ModelsConfig


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    fake = create_fake_provider_app(
        FakeProviderSettings(
            latency_ms=0,
            failing_models=["fake-down"],
            models={"fake-cut": FaultProfile(cut_after_chunks=2)},
        )
    )
    config = models_config()
    storage = StorageSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'rt.db'}")
    settings = runtime_settings(storage, provider=ProviderSettings(_env_file=None), models=config)
    store = MetadataStore(storage)
    await store.setup()
    await store.ensure_tenant("acme", "acme")
    raw, record = generate_key("acme")
    await store.add_key(record)
    async with served(fake) as fake_url:
        router = ModelRouter(config, fake_url)
        services = app_services(store, settings, router=LocalRouterHandle(router))
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api(services)))
        client = openai.AsyncOpenAI(
            base_url="http://gateway/v1", api_key=raw, http_client=http, max_retries=0
        )
        try:
            yield Gateway(client, config)
        finally:
            await http.aclose()
            await router.close()
            await services.limiter.close()
            await store.close()


async def test_models_lists_the_aliases_then_the_configured_models(gateway: Gateway) -> None:
    ids = [model.id async for model in gateway.client.models.list()]
    assert ids == [
        "smart",
        "brittle",
        "embedder",
        "primary",
        "cut",
        "fake-fallback",
        "embed-down",
        "fake-embed",
    ]


async def test_the_answer_names_the_model_that_answered(gateway: Gateway) -> None:
    answer = await gateway.client.chat.completions.create(
        model="smart", messages=[{"role": "user", "content": "hello gateway"}]
    )
    assert answer.model == "fake-fallback"  # "primary" (fake-down at the provider) failed
    assert answer.choices[0].message.content == "[fake-fallback] You said: hello gateway"
    assert answer.usage is not None and answer.usage.completion_tokens > 0


async def test_streamed_answer_with_tools(gateway: Gateway) -> None:
    stream = await gateway.client.chat.completions.create(
        model="smart",
        messages=[{"role": "user", "content": "what is 6 * 7?"}],
        tools=[CALCULATOR],  # type: ignore[list-item]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert {chunk.model for chunk in chunks} == {"fake-fallback"}
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert [c.function.name for c in calls if c.function] == ["calculator"]
    closing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert closing[0].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None


async def test_a_stream_cut_after_its_first_token_ends_with_an_error(gateway: Gateway) -> None:
    stream = await gateway.client.chat.completions.create(
        model="brittle",
        messages=[{"role": "user", "content": "a long enough answer, please"}],
        stream=True,
    )
    text = ""
    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text, "the first tokens arrived"
    assert "broke off" in raised.value.message


async def test_an_unknown_model_is_a_404_in_openais_shape(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await gateway.client.chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "hi"}]
        )
    assert "GET /v1/models" in raised.value.message


# -- embeddings ---------------------------------------------------------------------------


async def test_embeddings_as_floats_name_the_model_that_answered(gateway: Gateway) -> None:
    answer = await gateway.client.embeddings.create(
        model="embedder", input=["I like tea", "my cat"], encoding_format="float", dimensions=32
    )
    assert answer.model == "fake-embed"  # "embed-down" (fake-down at the provider) failed
    assert answer.object == "list"
    assert [item.index for item in answer.data] == [0, 1]
    assert answer.data[1].embedding == fake_embedding("my cat", 32)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 5


async def test_embeddings_in_the_clients_default_base64(gateway: Gateway) -> None:
    # Without encoding_format the official client asks for base64 and decodes it.
    answer = await gateway.client.embeddings.create(model="fake-embed", input="I like tea")
    assert answer.data[0].embedding == pytest.approx(fake_embedding("I like tea"), abs=1e-6)


async def test_embeddings_of_an_unknown_model_are_a_404(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await gateway.client.embeddings.create(model="text-embedding-9", input="hi")
    assert raised.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "fake-embed", "input": ""}, "input"),
        ({"model": "fake-embed", "input": []}, "input"),
        ({"model": "fake-embed", "input": [[1, 2, 3]]}, "input"),
        ({"model": "fake-embed", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "fake-embed", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x"}, "model"),
    ],
)
async def test_a_bad_embeddings_body_is_a_422_in_openais_shape(
    gateway: Gateway, body: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        await gateway.client.post("/embeddings", body=body, cast_to=httpx.Response)
    assert raised.value.code == "invalid_request"
    assert isinstance(raised.value.param, str) and raised.value.param.startswith(param)


async def test_dimensions_the_provider_refuses_are_the_callers_fault(gateway: Gateway) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        await gateway.client.embeddings.create(model="fake-embed", input="x", dimensions=10**6)
    assert raised.value.code == "provider_rejected"
