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


# IPv4 inside IPv6: each form reaches the IPv4 address it carries, so it is checked as that
# address (Python's ``is_global`` calls most of them global).
@pytest.mark.parametrize(
    "url",
    [
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
        "http://[::ffff:a9fe:a9fe]/hook",  # IPv4-mapped 169.254.169.254
        "http://[::127.0.0.1]/hook",  # IPv4-compatible
        "http://[::a00:1]/hook",  # IPv4-compatible 10.0.0.1
        "http://[64:ff9b::7f00:1]/hook",  # NAT64 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 169.254.169.254
        "http://[64:ff9b:1::a00:1]/hook",  # local-use NAT64 (RFC 8215)
        "http://[2002:7f00:1::1]/hook",  # 6to4 127.0.0.1
        "http://[2002:c0a8:101::1]/hook",  # 6to4 192.168.1.1
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",  # Teredo, client 127.0.0.1
    ],
)
async def test_ipv4_embedded_in_ipv6_is_checked_as_that_ipv4(url: str) -> None:
    with pytest.raises(InvalidRequest, match="private"):
        await WebhookSender().check(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://[64:ff9b::5db8:d822]/hook",  # NAT64 93.184.216.34
        "http://[2002:5db8:d822::1]/hook",  # 6to4 93.184.216.34
        "http://[2606:4700::1111]/hook",  # plain global IPv6
    ],
)
async def test_public_ipv4_embedded_in_ipv6_passes(url: str) -> None:
    assert await WebhookSender().check(url) == url


async def test_a_name_resolving_to_an_embedded_private_address_is_refused() -> None:
    async def resolve(host: str) -> list[str]:
        return ["93.184.216.34", "64:ff9b::a00:1"]

    with pytest.raises(InvalidRequest, match="private"):
        await WebhookSender(resolver=resolve).check("https://hook.example/hook")
