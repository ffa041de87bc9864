"""The event stream of one run: kept in memory for this replica's subscribers and, for runs
that others may join, written to the database in small batches.

Events are numbered from 1 in the order the run produced them; the number is the SSE event
id, so a client that reconnects with ``Last-Event-ID: n`` gets everything after ``n``.
Persisting is batched (one INSERT per ``flush_interval_s`` or ``max_batch`` events) so a
token stream does not cost a database write per token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from agent_runtime.protocol.sse import json_dumpb

logger = logging.getLogger(__name__)

Event = tuple[int, str, bytes]
"""(sequence number, event name, JSON data)."""
EventSink = Callable[[str, Sequence[Event]], Awaitable[None]]


class RunStream:
    """Publish/subscribe for one run's events on this replica."""

    def __init__(
        self,
        run_id: str,
        *,
        sink: EventSink | None = None,
        flush_interval_s: float = 0.05,
        max_batch: int = 100,
        after: int = 0,
    ) -> None:
        """``after``: the last event number already stored (a resumed attempt goes on)."""
        self.run_id = run_id
        self._start = after
        self._sink = sink
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._events: list[Event] = []
        self._unsaved: list[Event] = []
        self._changed = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._subscribers = 0
        self._expected = 0
        self._closing = False
        self.closed = False

    @property
    def persisted(self) -> bool:
        return self._sink is not None

    @property
    def wanted(self) -> bool:
        """Whether anyone can read events: skip encoding them otherwise."""
        return self._sink is not None or self._subscribers > 0 or self._expected > 0

    @property
    def last_seq(self) -> int:
        return self._events[-1][0] if self._events else self._start

    def resume_after(self, seq: int) -> None:
        """Number new events after ``seq`` (what an earlier attempt already stored)."""
        if not self._events:
            self._start = seq

    def expect_subscriber(self) -> None:
        """Keep events for a subscriber that arrives after the run has started."""
        self._expected += 1

    def publish(self, name: str, data: Any) -> None:
        if self._closing or not self.wanted:
            return
        event = (self.last_seq + 1, name, data if isinstance(data, bytes) else json_dumpb(data))
        self._events.append(event)
        self._notify()
        if self._sink is None:
            return
        self._unsaved.append(event)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        if len(self._unsaved) >= self._max_batch:
            self._flush_now.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _flush_loop(self) -> None:
        while not self._closing:
            try:
                async with asyncio.timeout(self._flush_interval_s):
                    await self._flush_now.wait()
            except TimeoutError:
                pass
            self._flush_now.clear()
            await self._flush()

    async def _flush(self) -> None:
        batch, self._unsaved = self._unsaved, []
        if not batch or self._sink is None:
            return
        try:
            await self._sink(self.run_id, batch)
        except Exception as exc:  # joiners on other replicas miss these; the run goes on
            logger.warning(
                "run %s: %d stream events not stored (%s)",
                self.run_id,
                len(batch),
                type(exc).__name__,
            )

    async def close(self) -> None:
        """Store what is left, then end every subscription."""
        self._closing = True
        if self._flusher is not None:
            self._flush_now.set()
            await self._flusher
        await self._flush()
        self.closed = True
        self._notify()

    async def subscribe(self, after: int = 0) -> AsyncIterator[Event]:
        """Events numbered above ``after``, then live ones until the run ends."""
        if self._expected:
            self._expected -= 1
        self._subscribers += 1
        try:
            index = 0
            while True:
                while index < len(self._events):
                    event = self._events[index]
                    index += 1
                    if event[0] > after:
                        yield event
                if self.closed:
                    return
                await self._changed.wait()
        finally:
            self._subscribers -= 1
