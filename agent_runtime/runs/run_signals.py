"""Push, not poll: who waits on a run, a thread or the queue is told when it changes.

A waiter (``runs/wait`` and ``join``, a stream following a run stored by another replica,
a thread's stream, the executor's queue loop) takes a :class:`Watch` on topics
(:func:`run_topic`, :func:`events_topic`, :func:`thread_topic`, :data:`QUEUE`) *before*
it reads the database, then sleeps until one of them is signalled or ``fallback_s``
passes, and reads again. The writer commits first and signals after, so a waiter either
read the change already or is woken to read it. A signal says only "look again": several
coalesce into one wake-up, so a watch holds one flag, never a queue.

Signals reach this replica's watches at once (in memory) and, with a
:class:`~agent_runtime.db.redis_pubsub.RedisPubSub`, every other replica's: a background
task sends what piled up in one message (topics, newline-separated, after this replica's
id, so that it skips its own). A message lost (Redis away, the outbox full, a replica
that was resubscribing) costs at most ``fallback_s``: the waiter reads the database then
anyway; on each (re)subscription every watch is woken to read at once.

Everything is bounded: watches (``max_watchers``; one more is not registered and only
polls), the outbox and the timers of delayed runs (``max_pending``; more are dropped).
Disabled (``AGENT_RUN_NOTIFY=false``), nothing is signalled and every waiter polls every
``fallback_s``: the behaviour before notifications, kept for comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator

from agent_runtime.config.run_settings import RunSettings
from agent_runtime.config.settings import LimitSettings
from agent_runtime.db.redis_pubsub import RedisPubSub

logger = logging.getLogger(__name__)

QUEUE = "queue"
"""Runs became claimable: queued, given back, put back by the reaper, or due."""
_MESSAGE_TOPICS = 256  # topics per published message: bounds a message's size


def run_topic(run_id: str) -> str:
    """A run ended (or was deleted, or started on this replica)."""
    return f"run:{run_id}"


def events_topic(run_id: str) -> str:
    """A batch of a run's events was stored (apart from its end: waiters skip these)."""
    return f"events:{run_id}"


def thread_topic(thread_id: str) -> str:
    """A thread got a run, a run on it ended, its state changed, or it was deleted."""
    return f"thread:{thread_id}"


class Watch:
    """One waiter's interest in some topics: a flag raised when any is signalled."""

    def __init__(self, fallback_s: float) -> None:
        self.fallback_s = fallback_s
        self._flag = asyncio.Event()

    def signal(self) -> None:
        self._flag.set()

    async def wait(self, timeout_s: float | None = None) -> bool:
        """Until a signal (True) or ``timeout_s`` (default: the fallback interval; False)."""
        try:
            async with asyncio.timeout(self.fallback_s if timeout_s is None else timeout_s):
                await self._flag.wait()
        except TimeoutError:
            return False
        self._flag.clear()
        return True


class RunSignals:
    """This replica's notifier (see the module)."""

    def __init__(
        self,
        *,
        fallback_s: float = 2.0,
        enabled: bool = True,
        bus: RedisPubSub | None = None,
        max_watchers: int = 10_000,
        max_pending: int = 10_000,
    ) -> None:
        self.fallback_s = fallback_s
        self.enabled = enabled
        self._bus = bus if enabled else None
        self._max_watchers = max_watchers
        self._max_pending = max_pending
        self._watches: dict[str, set[Watch]] = {}
        self._count = 0
        self._outbox: dict[str, None] = {}  # an ordered set: repeats coalesce
        self._outbox_ready = asyncio.Event()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._timer_ids = 0
        self._sender = uuid.uuid4().hex
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()
        self.dropped = 0  # notifications not sent: the outbox was full or Redis refused

    @classmethod
    def from_settings(cls, runs: RunSettings, limits: LimitSettings) -> RunSignals:
        bus = None
        if runs.run_notify and limits.redis_url is not None:
            bus = RedisPubSub(
                limits.redis_url.get_secret_value(),
                runs.run_notify_channel,
                timeout_s=limits.redis_timeout_s,
                retry_min_s=runs.run_notify_retry_min_s,
                retry_max_s=runs.run_notify_retry_max_s,
                ping_s=runs.run_notify_ping_s,
            )
        return cls(
            fallback_s=runs.run_fallback_poll_s,
            enabled=runs.run_notify,
            bus=bus,
            max_watchers=runs.run_notify_max_watchers,
            max_pending=runs.run_notify_max_pending,
        )

    @property
    def subscriptions(self) -> int:
        """How many times this replica (re)subscribed to Redis (0 without Redis)."""
        return 0 if self._bus is None else self._bus.subscriptions

    @property
    def watching(self) -> int:
        """Registered watches (each waiter's, until it leaves)."""
        return self._count

    @property
    def pending(self) -> int:
        """Notifications waiting for Redis, and timers of delayed runs."""
        return len(self._outbox) + len(self._timers)

    # -- waiting ------------------------------------------------------------------------
    @contextlib.contextmanager
    def watch(self, *topics: str) -> Iterator[Watch]:
        """A watch on ``topics`` for the ``with`` block; take it before reading."""
        watch = Watch(self.fallback_s)
        registered = self.enabled and self._count < self._max_watchers
        if self.enabled and not registered:
            logger.warning("run signals: %d watches already; this one polls", self._count)
        if registered:
            for topic in topics:
                self._watches.setdefault(topic, set()).add(watch)
            self._count += 1
        try:
            yield watch
        finally:
            if registered:
                self._count -= 1
                for topic in topics:
                    watches = self._watches.get(topic)
                    if watches is not None:
                        watches.discard(watch)
                        if not watches:
                            del self._watches[topic]

    # -- signalling ---------------------------------------------------------------------
    def notify(self, *topics: str) -> None:
        """Wake this replica's watches of ``topics`` (no one else's)."""
        for topic in topics:
            for watch in self._watches.get(topic, ()):
                watch.signal()

    def publish(self, *topics: str) -> None:
        """Wake every replica's watches of ``topics``: call it after the change committed."""
        if not self.enabled:
            return
        self.notify(*topics)
        if self._bus is None:
            return
        for topic in topics:
            if topic in self._outbox:
                continue
            if len(self._outbox) >= self._max_pending:
                self.dropped += 1
                continue
            self._outbox[topic] = None
        self._outbox_ready.set()

    def publish_later(self, delay_s: float, *topics: str) -> None:
        """:meth:`publish` after ``delay_s`` (a delayed run becomes due), unless closed first."""
        if not self.enabled or len(self._timers) >= self._max_pending:
            return
        self._timer_ids += 1
        key = self._timer_ids
        self._timers[key] = asyncio.get_running_loop().call_later(
            delay_s, self._timer_fired, key, topics
        )

    def _timer_fired(self, key: int, topics: tuple[str, ...]) -> None:
        self._timers.pop(key, None)
        self.publish(*topics)

    def _on_message(self, text: str) -> None:
        sender, _, body = text.partition("\n")
        if sender != self._sender:  # our own came back: already told locally
            self.notify(*body.split("\n"))

    def _on_subscribed(self) -> None:
        # Messages sent while we were away are lost: every waiter reads again now.
        for watches in list(self._watches.values()):
            for watch in watches:
                watch.signal()
        self.subscribed.set()

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self, ready_timeout_s: float = 2.0) -> None:
        """Listen and send through Redis, if any; waits (a bounded time) for the
        subscription and carries on without it (the fallback poll still holds)."""
        if self._bus is None or self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(
                self._bus.listen(self._on_message, self._on_subscribed), name="run signals in"
            ),
            loop.create_task(self._send_loop(), name="run signals out"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), ready_timeout_s)

    def loops(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    async def _send_loop(self) -> None:
        assert self._bus is not None
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            await self._send_pending()

    async def _send_pending(self) -> None:
        assert self._bus is not None
        while self._outbox:
            topics = list(self._outbox)[:_MESSAGE_TOPICS]
            for topic in topics:
                del self._outbox[topic]
            if not await self._bus.publish("\n".join([self._sender, *topics])):
                # Hints only: the waiters' fallback poll finds what these would have said.
                self.dropped += len(topics)

    async def close(self, flush_timeout_s: float = 1.0) -> None:
        """Send what is left (a bounded time), then stop."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._bus is None:
            return
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_timeout_s):
                await self._send_pending()
        await self._bus.close()
