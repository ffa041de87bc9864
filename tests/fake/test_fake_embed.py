"""The fake provider's embeddings: deterministic, unit length, similar texts close; over HTTP
with the official ``openai`` client (floats and its default, base64) and its faults."""

from __future__ import annotations

import math

import openai
import pytest

from agent_runtime.config.fault_profiles import FaultProfile
from agent_runtime.fake.fake_embed import DEFAULT_DIMENSIONS, MAX_INPUTS, fake_embedding
from agent_runtime.fake.provider_app import create_fake_provider_app
from tests.fake.provider_clients import asgi_http, fake_settings, openai_client


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # both unit length


def test_the_same_text_always_gets_the_same_unit_vector() -> None:
    first = fake_embedding("I like green tea", 64)
    assert first == fake_embedding("I like green tea", 64)
    assert len(first) == 64
    assert math.isclose(math.sqrt(sum(v * v for v in first)), 1.0)
    assert len(fake_embedding("x")) == DEFAULT_DIMENSIONS


def test_similar_texts_are_closer_than_unrelated_ones() -> None:
    tea = fake_embedding("I like tea")
    drinks = fake_embedding("which tea do I like?")
    cat = fake_embedding("my cat is called Bo")
    assert cosine(tea, drinks) > cosine(tea, cat)
    assert cosine(tea, drinks) > 0.3
    assert abs(cosine(tea, cat)) < 0.3
    # Case and punctuation do not matter; spelling shares trigrams.
    assert math.isclose(cosine(tea, fake_embedding("I LIKE TEA.")), 1.0)
    colour = fake_embedding("colour")
    assert cosine(colour, fake_embedding("colours")) > 0.4 > cosine(colour, fake_embedding("tea"))


def test_a_text_without_words_still_gets_a_unit_vector() -> None:
    vector = fake_embedding("?!", 8)
    assert math.isclose(sum(v * v for v in vector), 1.0)
    assert vector == fake_embedding("?!", 8)


async def test_the_openai_client_reads_floats_and_base64_alike() -> None:
    async with openai_client(fake_settings()) as client:
        as_floats = await client.embeddings.create(
            model="fake-embed", input=["I like tea", "my cat"], encoding_format="float"
        )
        # Without encoding_format the client asks for base64 and decodes it itself.
        as_base64 = await client.embeddings.create(model="fake-embed", input=["I like tea"])
        sized = await client.embeddings.create(model="any-model", input="tea", dimensions=12)
    assert as_floats.object == "list" and as_floats.model == "fake-embed"
    assert [item.index for item in as_floats.data] == [0, 1]
    assert as_floats.data[0].embedding == pytest.approx(fake_embedding("I like tea"))
    assert as_base64.data[0].embedding == pytest.approx(fake_embedding("I like tea"), abs=1e-6)
    assert len(sized.data[0].embedding) == 12
    # Four characters a token, as for chat: "I like tea" (3) + "my cat" (2).
    assert as_floats.usage.prompt_tokens == as_floats.usage.total_tokens == 5


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "fake-embed", "input": ""}, "input"),
        ({"model": "fake-embed", "input": []}, "input"),
        ({"model": "fake-embed", "input": ["x"] * (MAX_INPUTS + 1)}, "input"),
        ({"model": "fake-embed", "input": [1, 2, 3]}, "input"),
        ({"model": "fake-embed", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "fake-embed", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x"}, "model"),
    ],
)
async def test_a_bad_request_is_openais_400_naming_the_field(
    body: dict[str, object], param: str
) -> None:
    async with asgi_http(create_fake_provider_app(fake_settings())) as http:
        response = await http.post("/embeddings", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is not None and error["param"].startswith(param)


async def test_not_json_is_a_400() -> None:
    async with asgi_http(create_fake_provider_app(fake_settings())) as http:
        response = await http.post("/embeddings", content=b"{not json")
    assert response.status_code == 400
    assert "parse the JSON" in response.json()["error"]["message"]


async def test_an_embedding_models_faults_apply_as_for_chat() -> None:
    settings = fake_settings(models={"fake-embed": FaultProfile(error_rates={"503": 1.0})})
    async with openai_client(settings) as client:
        with pytest.raises(openai.InternalServerError) as raised:
            await client.embeddings.create(model="fake-embed", input="tea")
        # Another model is unaffected.
        fine = await client.embeddings.create(model="fake-embed-2", input="tea")
    assert raised.value.status_code == 503
    assert len(fine.data) == 1


async def test_the_fake_lists_its_embedding_model() -> None:
    async with asgi_http(create_fake_provider_app(fake_settings())) as http:
        response = await http.get("/models")
    assert "fake-embed" in [model["id"] for model in response.json()["data"]]
