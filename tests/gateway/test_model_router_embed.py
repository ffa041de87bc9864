"""Embeddings through the model router and the fake provider: the chain, what observers
see (no completion reserved), failures, and the provider answers the client refuses."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from agent_runtime.config.pricing import ModelPrice
from agent_runtime.core.errors import ModelNotFound, ProviderChainExhausted, ProviderRejected
from agent_runtime.core.types import EmbeddingRequest
from agent_runtime.fake.fake_embed import fake_embedding
from agent_runtime.gateway.provider_client import embeddings_answer
from tests.gateway.router_harness import fake, harness


def embed(*texts: str, alias: str = "fake-embed", **fields: Any) -> EmbeddingRequest:
    return EmbeddingRequest(alias=alias, texts=list(texts), **fields)


async def test_vectors_in_order_with_usage_cost_and_what_observers_see() -> None:
    async with harness(fake()) as h:
        result = await h.router.embed(embed("I like tea", "my cat is Bo", dimensions=16))
    # JSON carries floats exactly: the vectors are the fake's own.
    assert result.vectors == [fake_embedding("I like tea", 16), fake_embedding("my cat is Bo", 16)]
    assert result.model == "fake-embed"
    assert h.bodies == [
        {
            "model": "fake-embed",
            "input": ["I like tea", "my cat is Bo"],
            "encoding_format": "float",
            "dimensions": 16,
        }
    ]
    assert (result.usage.input_tokens, result.usage.output_tokens) == (6, 0)
    assert result.cost_usd == pytest.approx(6 * 0.02 / 1_000_000)
    [plan] = h.recorder.plans
    assert plan.request.alias == "fake-embed" and not plan.stream
    # Nothing is generated: the worst case is the estimated input alone, at input price.
    assert plan.completion_bound(plan.models[0], 4096) == 0
    price = ModelPrice("0.02", "0")
    assert plan.worst_case_usd(4096) == plan.prompt_tokens * price.input_per_million_usd / 10**6
    assert plan.worst_case_usd(4096, ModelPrice(1, 1000)) == plan.worst_case_usd(4096)
    assert h.report.outcome == "ok" and h.report.cost_usd == Decimal(6) * Decimal("0.02") / 10**6


async def test_a_failing_embedding_model_falls_back_to_the_next_of_its_alias() -> None:
    aliases = {"embedder": ["fake-embed-down", "fake-embed"]}
    async with harness(fake(failing_models=["fake-embed-down"]), model_aliases=aliases) as h:
        result = await h.router.embed(embed("tea", alias="embedder"))
    assert result.model == "fake-embed"
    assert h.hits["fake-embed-down"] >= 1 and h.hits["fake-embed"] == 1
    assert [a.outcome for a in result.attempts][-1] == "ok"
    assert result.attempts[0].model == "fake-embed-down"


async def test_a_chain_that_all_fails_is_exhausted() -> None:
    async with harness(fake(failing_models=["fake-embed"])) as h:
        with pytest.raises(ProviderChainExhausted):
            await h.router.embed(embed("tea"))
    assert h.report.outcome == "error"


async def test_a_request_the_provider_refuses_is_the_callers_fault_without_fallback() -> None:
    aliases = {"embedder": ["fake-embed", "fake-embed-2"]}
    async with harness(fake(), model_aliases=aliases) as h:
        with pytest.raises(ProviderRejected, match="dimensions"):
            await h.router.embed(embed("tea", alias="embedder", dimensions=100_000))
    assert h.hits == {"fake-embed": 1}
    assert h.report.outcome == "rejected"
    assert h.router.breakers.get("fake-embed").refuses_calls() is False


async def test_an_unlisted_model_is_a_404() -> None:
    async with harness(fake()) as h:
        with pytest.raises(ModelNotFound, match="GET /v1/models"):
            await h.router.embed(embed("tea", alias="text-embedding-9"))
    assert not h.hits


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"data": [{"index": 1, "embedding": [0.1]}]}, "out of place"),
        ({"data": [{"index": 0, "embedding": [0.1]}, {"index": 0, "embedding": [1.0]}]}, "place"),
        ({"data": []}, "no embedding for input 0"),
        ({"data": [{"index": 0, "embedding": "AAAA"}]}, "not a list"),
        ({"data": [{"index": 0, "embedding": [True]}]}, "finite numbers"),
        ({"data": [{"index": 0, "embedding": [float("nan")]}]}, "finite numbers"),
        ({"data": [{"index": 0, "embedding": [1.0]}], "usage": {"prompt_tokens": "3"}}, "count"),
    ],
)
def test_answers_that_are_not_one_vector_per_input_are_refused(
    data: dict[str, Any], why: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=why):
        embeddings_answer(data, 1)


def test_vectors_come_back_in_the_inputs_order() -> None:
    data = {
        "data": [{"index": 1, "embedding": [2]}, {"index": 0, "embedding": [1.5]}],
        "usage": {"prompt_tokens": 7},
    }
    vectors, usage = embeddings_answer(data, 2)
    assert vectors == [[1.5], [2.0]] and usage.input_tokens == 7
