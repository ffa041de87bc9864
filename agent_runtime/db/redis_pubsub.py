"""One Redis pub/sub channel per replica: a publisher and one subscriber connection.

The subscriber reconnects for as long as it runs, waiting ``retry_min_s`` after a failure
and doubling up to ``retry_max_s`` (with jitter, so replicas cut off together do not come
back in step). Redis tells nobody when a subscriber's connection dies without a reset (a
hung server, a cut network), so the subscriber pings when the channel has been quiet for
``ping_s`` and reconnects when nothing at all came back for three times that.

Pub/sub delivers at most once: messages sent while a subscriber is away are lost. Its
users therefore treat messages as hints and keep a slow check of their own; each
(re)subscription is reported (``on_subscribed``) so they can re-check at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from agent_runtime.db.redis_client import make_redis_client

logger = logging.getLogger(__name__)

REDIS_FAILURES = (redis_errors.RedisError, OSError)
_PING = "agent-pubsub-alive"


class SubscriptionLost(redis_errors.ConnectionError):
    """The subscriber heard nothing, not even its own ping, for too long."""


class RedisPubSub:
    """Publish to and listen on ``channel``; every wait is bounded (see the module)."""

    def __init__(
        self,
        url: str,
        channel: str,
        *,
        timeout_s: float,
        retry_min_s: float,
        retry_max_s: float,
        ping_s: float,
    ) -> None:
        self.channel = channel
        self._retry_min_s = retry_min_s
        self._retry_max_s = max(retry_min_s, retry_max_s)
        self._ping_s = ping_s
        self._publisher = make_redis_client(url, timeout_s)
        # No read timeout on the subscriber: it waits for messages; get_message's own
        # timeout and the pings bound each wait.
        self._subscriber = Redis.from_url(url, socket_connect_timeout=timeout_s)
        self.subscriptions = 0  # how many times the subscriber (re)subscribed

    async def publish(self, message: str) -> bool:
        """Send ``message``; False (logged) when Redis did not take it."""
        try:
            await self._publisher.publish(self.channel, message)
        except REDIS_FAILURES as exc:
            logger.warning("pub/sub %s: not published (%s)", self.channel, type(exc).__name__)
            return False
        return True

    async def listen(
        self, on_message: Callable[[str], None], on_subscribed: Callable[[], None]
    ) -> None:
        """Call ``on_message(text)`` for every message, until cancelled; reconnects."""
        retry_s = self._retry_min_s
        while True:
            pubsub = self._subscriber.pubsub()
            before = self.subscriptions
            try:
                await pubsub.subscribe(self.channel)
                await self._receive(pubsub, on_message, on_subscribed)
            except REDIS_FAILURES as exc:
                if self.subscriptions > before:
                    retry_s = self._retry_min_s  # it had worked: start the backoff afresh
                logger.warning(
                    "pub/sub %s: subscription lost (%s); again in %.1f s",
                    self.channel,
                    type(exc).__name__,
                    retry_s,
                )
            finally:
                with contextlib.suppress(*REDIS_FAILURES):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            await asyncio.sleep(retry_s * random.uniform(0.8, 1.2))
            retry_s = min(retry_s * 2, self._retry_max_s)

    async def _receive(
        self,
        pubsub: PubSub,
        on_message: Callable[[str], None],
        on_subscribed: Callable[[], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self._ping_s)
            now = loop.time()
            if message is not None:
                heard, pinged = now, False
                kind = message.get("type")
                if kind == "subscribe":
                    # Only now does Redis deliver to us: what was sent before is lost.
                    self.subscriptions += 1
                    on_subscribed()
                elif kind == "message":
                    data = message.get("data")
                    on_message(data.decode() if isinstance(data, bytes) else str(data))
                continue
            if now - heard > 3 * self._ping_s:
                raise SubscriptionLost(f"nothing heard for {now - heard:.1f} s")
            if not pinged:
                await pubsub.ping(_PING)
                pinged = True

    async def close(self) -> None:
        with contextlib.suppress(*REDIS_FAILURES):
            await self._publisher.aclose()
        with contextlib.suppress(*REDIS_FAILURES):
            await self._subscriber.aclose()
