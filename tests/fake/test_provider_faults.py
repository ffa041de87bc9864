"""The fake provider carrying out faults, seen through ``openai`` and ``ChatOpenAI``: the drawn
latency, errors and 429s, stream pacing, cuts and hangs, and the control endpoint.

Latency is checked on the delays the server draws (an injected ``sleep`` records them),
never on wall time except for loose lower bounds; hangs, cut streams and token pacing run
on a real socket (``tests.servers.served``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import SecretStr

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.fault_profiles import FaultProfile, LognormalLatency, RateLimit
from agent_runtime.fake.faults import FaultInjector, configured_faults
from agent_runtime.fake.provider_app import create_fake_provider_app
from tests.servers import served

ROOT = "http://fake-provider.test"
TOKEN = "control-secret-42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "one two three four five"}
]


def fake(**overrides: Any) -> FakeProviderSettings:
    return FakeProviderSettings(
        **{"latency_ms": 0.0, "control_token": TOKEN, "control_enabled": True, **overrides}
    )


class SleepLog:
    """An injected ``sleep`` that records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@asynccontextmanager
async def in_process(app: FastAPI) -> AsyncIterator[tuple[openai.AsyncOpenAI, httpx.AsyncClient]]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ROOT) as http:
        client = openai.AsyncOpenAI(
            api_key="k", base_url=f"{ROOT}/v1", http_client=http, max_retries=0
        )
        yield client, http


async def outcome(client: openai.AsyncOpenAI, model: str) -> int | None:
    """The status a call fails with, None when it answers."""
    try:
        await client.chat.completions.create(model=model, messages=QUESTION)
    except openai.APIStatusError as error:
        return error.status_code
    return None


# --- through the openai client -------------------------------------------------------------


async def test_the_server_sleeps_the_drawn_latency() -> None:
    lognormal = LognormalLatency(kind="lognormal", median_ms=50, p99_ms=300)
    profile = FaultProfile(latency_ms=10, latency_distribution=lognormal)
    log = SleepLog()
    settings = FakeProviderSettings(default_profile=profile, seed=3)
    app = create_fake_provider_app(settings, sleep=log)
    async with in_process(app) as (client, _):
        for _ in range(20):
            await client.chat.completions.create(model="fake-fast", messages=QUESTION)
        slow: list[ChatCompletionMessageParam] = [{"role": "user", "content": "wait [delay:250]"}]
        await client.chat.completions.create(model="fake-fast", messages=slow)
    expected = FaultInjector(configured_faults(settings), seed=3)
    planned = [expected.plan("fake-fast").delay_ms / 1000 for _ in range(21)]
    assert log.delays[:20] == planned[:20]
    assert log.delays[20] == pytest.approx(planned[20] + 0.25)
    assert len(set(log.delays)) == 21 and min(log.delays) >= 0.01


async def test_error_rates_reach_the_client_as_openai_errors() -> None:
    models = {"flaky": FaultProfile(error_rates={500: 0.3, 503: 0.2, 400: 0.1})}
    settings = fake(models=models, seed=9)
    async with in_process(create_fake_provider_app(settings)) as (client, _):
        observed = [await outcome(client, "flaky") for _ in range(40)]
        with pytest.raises(openai.InternalServerError) as failed:
            while True:
                await client.chat.completions.create(model="flaky", messages=QUESTION)
        healthy = [await outcome(client, "fake-fast") for _ in range(5)]
    injector = FaultInjector(configured_faults(settings), seed=9)
    assert observed == [injector.plan("flaky").status for _ in range(40)]
    assert {500, 503, 400, None} <= set(observed)
    assert isinstance(failed.value.body, dict)
    assert failed.value.body["type"] == "server_error"
    assert "flaky" in failed.value.body["message"]
    assert healthy == [None] * 5


async def test_429_carries_retry_after_for_openai_and_chat_openai() -> None:
    limited = FaultProfile(rate_limit=RateLimit(rate=1.0, retry_after_s=2.5))
    async with in_process(create_fake_provider_app(fake(models={"busy": limited}))) as (
        client,
        http,
    ):
        with pytest.raises(openai.RateLimitError) as raised:
            await client.chat.completions.create(model="busy", messages=QUESTION)
        llm = ChatOpenAI(
            model="busy",
            base_url=f"{ROOT}/v1",
            api_key=SecretStr("k"),
            http_async_client=http,
            max_retries=0,
        )
        with pytest.raises(openai.RateLimitError) as from_langchain:
            await llm.ainvoke("hello")
    for error in (raised.value, from_langchain.value):
        assert error.status_code == 429
        assert error.response.headers["retry-after"] == "3"
        assert error.response.headers["retry-after-ms"] == "2500"
        assert error.code == "rate_limit_exceeded"
        assert isinstance(error.body, dict) and error.body["type"] == "requests"
        assert "try again in 2.5s" in error.body["message"]


async def test_the_openai_client_waits_retry_after_between_tries() -> None:
    requests: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        requests.append(request)

    limited = FaultProfile(rate_limit=RateLimit(retry_after_s=0.3))
    app = create_fake_provider_app(fake(models={"busy": limited}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, event_hooks={"request": [count]}) as http:
        client = openai.AsyncOpenAI(
            api_key="k", base_url=f"{ROOT}/v1", http_client=http, max_retries=1
        )
        started = time.perf_counter()
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="busy", messages=QUESTION)
    assert time.perf_counter() - started >= 0.3 - 0.01
    assert len(requests) == 2


# --- streams: pacing, cuts, hangs ------------------------------------------------------------


async def test_stream_delays_are_drawn_per_chunk() -> None:
    profile = FaultProfile(latency_ms=5, first_token_delay_ms=300, inter_token_delay_ms=20)
    log = SleepLog()
    app = create_fake_provider_app(fake(models={"paced": profile}), sleep=log)
    async with in_process(app) as (client, _):
        stream = await client.chat.completions.create(
            model="paced", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert log.delays == [0.005, 0.3] + [0.02] * (len(chunks) - 1)


async def test_token_pacing_on_a_real_socket() -> None:
    profile = FaultProfile(first_token_delay_ms=200, inter_token_delay_ms=30)
    async with served(create_fake_provider_app(fake(models={"paced": profile}))) as base_url:
        client = openai.AsyncOpenAI(api_key="k", base_url=base_url, max_retries=0, timeout=10)
        async with client:
            started = time.perf_counter()
            stream = await client.chat.completions.create(
                model="paced", messages=QUESTION, stream=True
            )
            arrivals = [time.perf_counter() - started async for _ in stream]
    assert arrivals[0] >= 0.2 - 0.01
    assert arrivals[-1] >= 0.2 + 0.03 * (len(arrivals) - 1) - 0.01


async def test_a_slow_first_token_trips_the_clients_read_timeout() -> None:
    profile = FaultProfile(first_token_delay_ms=5_000)
    async with served(create_fake_provider_app(fake(models={"slow": profile}))) as base_url:
        timeout = httpx.Timeout(10, read=0.2)
        client = openai.AsyncOpenAI(api_key="k", base_url=base_url, max_retries=0, timeout=timeout)
        async with client:
            # The status and headers come at once; the first chunk does not.
            stream = await client.chat.completions.create(
                model="slow", messages=QUESTION, stream=True
            )
            with pytest.raises(openai.APITimeoutError):
                async for _ in stream:
                    pass


async def test_a_cut_stream_raises_in_openai_and_chat_openai() -> None:
    models = {
        "cut": FaultProfile(cut_after_chunks=2),
        "cut-late": FaultProfile(cut_after_chunks=99),
    }
    async with served(create_fake_provider_app(fake(models=models))) as base_url:
        client = openai.AsyncOpenAI(api_key="k", base_url=base_url, max_retries=0, timeout=5)
        async with client:
            # "[cut-late] You said: one two three four five": 8 word chunks, then the finish.
            for model, expected in (("cut", 2), ("cut-late", 9)):
                received = []
                stream = await client.chat.completions.create(
                    model=model, messages=QUESTION, stream=True
                )
                with pytest.raises(openai.APIConnectionError):
                    async for chunk in stream:
                        received.append(chunk)
                assert len(received) == expected
            # Every chunk came, the finish_reason too: only the [DONE] and the chunked end lack.
            assert received[-1].choices[0].finish_reason == "stop"
            plain = await client.chat.completions.create(model="cut", messages=QUESTION)
        llm = ChatOpenAI(model="cut", base_url=base_url, api_key=SecretStr("k"), max_retries=0)
        pieces = []
        with pytest.raises(openai.APIConnectionError):
            async for piece in llm.astream("one two three four five"):
                pieces.append(piece.content)
    assert pieces == ["[cut] ", "You "]
    assert plain.choices[0].message.content == "[cut] You said: one two three four five"


# --- the control endpoint --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/control/faults"),
        ("PUT", "/control/faults"),
        ("DELETE", "/control/faults"),
        ("PATCH", "/control/faults/fake-fast"),
    ],
)
async def test_control_is_404_without_a_configured_token(method: str, path: str) -> None:
    async with in_process(create_fake_provider_app(fake(control_token=None))) as (_, http):
        response = await http.request(method, path, headers=AUTH, json={})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/control/faults"),
        ("PUT", "/control/faults"),
        ("DELETE", "/control/faults"),
        ("PATCH", "/control/faults/fake-fast"),
    ],
)
async def test_control_is_404_without_the_dev_flag_even_with_the_token(
    method: str, path: str
) -> None:
    # Regression (issue 13, defect 6): a token alone opened the fault table wherever the
    # fake was deployed; changing faults is a development feature, off unless asked for.
    assert FakeProviderSettings(_env_file=None).control_enabled is False
    async with in_process(create_fake_provider_app(fake(control_enabled=False))) as (_, http):
        response = await http.request(method, path, headers=AUTH, json={"hang": True})
    assert response.status_code == 404
    assert "AGENT_FAKE_CONTROL_ENABLED" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"x-api-key": ""}],
)
async def test_control_needs_the_token(headers: dict[str, str]) -> None:
    async with in_process(create_fake_provider_app(fake())) as (_, http):
        denied = [
            await http.get("/control/faults", headers=headers),
            await http.put("/control/faults", headers=headers, json={}),
            await http.patch("/control/faults/m", headers=headers, json={"hang": True}),
            await http.delete("/control/faults", headers=headers),
        ]
        allowed = await http.get("/control/faults", headers={"x-api-key": TOKEN})
    for response in denied:
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert TOKEN not in response.text
    assert allowed.status_code == 200


async def test_control_get_put_patch_delete() -> None:
    settings = fake(latency_ms=3, failing_models=["broken"])
    async with in_process(create_fake_provider_app(settings)) as (client, http):
        configured = (await http.get("/control/faults", headers=AUTH)).json()
        assert configured == configured_faults(settings).model_dump(mode="json")
        assert configured["models"]["broken"]["error_rates"] == {"500": 1.0}

        table = {"default": {"error_rates": {"503": 1}}, "models": {"fake-smart": {}}}
        put = await http.put("/control/faults", headers=AUTH, json=table)
        assert put.status_code == 200
        assert put.json()["default"]["error_rates"] == {"503": 1.0}
        assert [await outcome(client, m) for m in ("fake-fast", "fake-smart", "broken")] == [
            503,
            None,
            503,
        ]

        patched = await http.patch(
            "/control/faults/vendor/model-x", headers=AUTH, json={"rate_limit": {"rate": 1}}
        )
        assert set(patched.json()["models"]) == {"fake-smart", "vendor/model-x"}
        assert await outcome(client, "vendor/model-x") == 429
        assert "vendor/model-x" in [m.id for m in (await client.models.list()).data]

        bad = await http.put("/control/faults", headers=AUTH, json={"default": {"hang": "x"}})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "default.hang"
        not_json = await http.patch("/control/faults/m", headers=AUTH, content=b"{nope")
        assert not_json.status_code == 400

        reset = await http.delete("/control/faults", headers=AUTH)
        assert reset.json() == configured
        assert [await outcome(client, m) for m in ("fake-fast", "broken")] == [None, 500]


async def test_a_change_applies_to_calls_that_start_after_it() -> None:
    waiting, gate = asyncio.Event(), asyncio.Event()

    async def gated_sleep(seconds: float) -> None:
        waiting.set()
        await gate.wait()

    app = create_fake_provider_app(fake(latency_ms=1), sleep=gated_sleep)
    async with in_process(app) as (client, http):
        before = asyncio.create_task(outcome(client, "fake-fast"))
        await waiting.wait()  # the first call has its plan and waits its latency
        profile = {"error_rates": {"502": 1}}
        await http.patch("/control/faults/fake-fast", headers=AUTH, json=profile)
        assert await outcome(client, "fake-fast") == 502  # no latency in the new profile
        gate.set()
        assert await before is None


async def test_hang_set_through_the_control_endpoint() -> None:
    app = create_fake_provider_app(fake())
    async with served(app) as base_url:
        root = base_url.removesuffix("/v1")
        async with httpx.AsyncClient(base_url=root, headers=AUTH) as http:
            await http.patch("/control/faults/fake-stuck", json={"hang": True})
        client = openai.AsyncOpenAI(api_key="k", base_url=base_url, max_retries=0, timeout=0.3)
        async with client:
            started = time.perf_counter()
            with pytest.raises(openai.APITimeoutError):
                await client.chat.completions.create(model="fake-stuck", messages=QUESTION)
            assert time.perf_counter() - started >= 0.3 - 0.01
            assert await outcome(client, "fake-fast") is None
