"""RedisPubSub against a real Redis, through a TCP proxy the tests cut: messages arrive, a
dropped connection is resubscribed (with backoff) and reported, a hung one is found by its
pings, and publishing while Redis is away fails fast and quietly."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

import pytest

from agent_runtime.db.redis_pubsub import RedisPubSub
from tests.tcp_proxy import TcpProxy, proxied_url
from tests.time_control import wait_for


class Listener:
    """A subscriber running in the background, recording what it hears."""

    def __init__(self, pubsub: RedisPubSub) -> None:
        self.messages: list[str] = []
        self.subscribed = 0
        self._task = asyncio.ensure_future(pubsub.listen(self.messages.append, self._on_sub))

    def _on_sub(self) -> None:
        self.subscribed += 1

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
def proxy(redis_url: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy.to_url(redis_url, default_port=6379)
    yield proxy
    proxy.close()


def pubsub(url: str, ping_s: float = 5.0) -> RedisPubSub:
    return RedisPubSub(
        url,
        f"test:pubsub:{uuid.uuid4().hex}",
        timeout_s=1.0,
        retry_min_s=0.05,
        retry_max_s=0.2,
        ping_s=ping_s,
    )


async def test_messages_arrive_after_the_subscription(redis_url: str) -> None:
    bus = pubsub(redis_url)
    listener = Listener(bus)
    try:
        await wait_for(lambda: listener.subscribed == 1)
        assert await bus.publish("a\nb")
        await wait_for(lambda: listener.messages == ["a\nb"])
    finally:
        await listener.stop()
        await bus.close()


async def test_a_dropped_subscription_comes_back_and_says_so(
    redis_url: str, proxy: TcpProxy
) -> None:
    bus = pubsub(proxied_url(redis_url, proxy))
    direct = RedisPubSub(
        redis_url, bus.channel, timeout_s=1.0, retry_min_s=0.05, retry_max_s=0.2, ping_s=5.0
    )
    listener = Listener(bus)
    try:
        await wait_for(lambda: listener.subscribed == 1)
        proxy.down()
        assert not await bus.publish("lost")  # refused at once, not after a timeout
        proxy.up()
        # Resubscribed: the user is told (it may have missed messages) and hears again.
        await wait_for(lambda: listener.subscribed == 2)
        assert await direct.publish("after")
        await wait_for(lambda: listener.messages == ["after"])
    finally:
        await listener.stop()
        await bus.close()
        await direct.close()


async def test_a_hung_connection_is_found_by_its_pings(redis_url: str, proxy: TcpProxy) -> None:
    bus = pubsub(proxied_url(redis_url, proxy), ping_s=0.1)
    listener = Listener(bus)
    try:
        await wait_for(lambda: listener.subscribed == 1)
        proxy.hang()  # cuts it; the next connection is accepted and never answered
        await wait_for(lambda: proxy.hung >= 1)
        proxy.up()  # a new connection would work, but the hung one never says it failed
        await wait_for(lambda: listener.subscribed == 2)
    finally:
        await listener.stop()
        await bus.close()
