"""Run webhooks: URL checks (no SSRF to private addresses) and delivery to a real receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from agent_runtime.core.errors import InvalidRequest
from agent_runtime.runs.webhooks import WebhookSender
from tests.servers import served


class Receiver:
    """A webhook endpoint on a real socket that records what it got."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failures = failures
        self.arrived = asyncio.Event()
        self.app = FastAPI()
        self.app.post("/hook")(self.hook)

    async def hook(self, request: Request) -> Response:
        if self.failures > 0:
            self.failures -= 1
            return Response(status_code=503)
        self.calls.append(await request.json())
        self.arrived.set()
        return Response(status_code=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    async with served(hook.app) as v1_url:
        yield hook, v1_url.removesuffix("/v1") + "/hook"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "not a url",
        "http:///no-host",
        "http://127.0.0.1:8000/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://localhost/hook",
    ],
)
async def test_refused_urls(url: str) -> None:
    with pytest.raises(InvalidRequest, match="webhook"):
        await WebhookSender().check(url)


async def test_a_public_address_passes_and_private_ones_can_be_allowed() -> None:
    assert await WebhookSender().check("https://93.184.216.34/hook")
    assert await WebhookSender(allow_private=True).check("http://127.0.0.1:9/hook")


async def test_disabled_webhooks_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="disabled"):
        await WebhookSender(enabled=False).check("https://93.184.216.34/hook")


async def test_delivery_posts_the_payload(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    assert await WebhookSender(allow_private=True).send(url, {"run_id": "r1", "status": "success"})
    [call] = hook.calls
    assert (call["run_id"], call["status"]) == ("r1", "success")
    assert call["webhook_sent_at"].endswith("+00:00")


async def test_delivery_retries_then_gives_up() -> None:
    flaky = Receiver(failures=1)
    async with served(flaky.app) as v1_url:
        url = v1_url.removesuffix("/v1") + "/hook"
        sender = WebhookSender(allow_private=True, attempts=2, timeout_s=2)
        assert await sender.send(url, {"run_id": "r2"})
        assert len(flaky.calls) == 1
    down = Receiver(failures=5)
    async with served(down.app) as v1_url:
        url = v1_url.removesuffix("/v1") + "/hook"
        assert not await WebhookSender(allow_private=True, attempts=2).send(url, {"run_id": "r3"})
