"""The event stream of one run: kept in memory for this replica's subscribers and, for runs
that others may join, written to the database in small batches.

Events are numbered from 1 in the order the run produced them; the number is the SSE event
id, so a client that reconnects with ``Last-Event-ID: n`` gets everything after ``n``.
Persisting is batched (one INSERT per ``flush_interval_s`` or ``max_batch`` events) so a
token stream does not cost a database write per token.

A batch whose write fails is tried again (``flush_attempts`` tries in all, the waits
between them doubling from ``flush_backoff_s``); the run goes on meanwhile, and this
replica's subscribers, who read the events from memory, miss nothing. A batch still not
written is lost to everyone who reads the run from the database: they find a hole in the
numbers, which :func:`with_gaps` turns into an ``error`` event naming the lost numbers
(:func:`gap_event`) rather than passing over it in silence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
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
        flush_attempts: int = 3,
        flush_backoff_s: float = 0.1,
        after: int = 0,
    ) -> None:
        """``after``: the last event number already stored (a resumed attempt goes on)."""
        self.run_id = run_id
        self._start = after
        self._sink = sink
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._flush_attempts = flush_attempts
        self._flush_backoff_s = flush_backoff_s
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
        # One batch at a time, in order, so that a reader never finds a later batch
        # stored before an earlier one that is still being tried: a hole means a loss.
        for attempt in range(1, self._flush_attempts + 1):
            try:
                await self._sink(self.run_id, batch)
                return
            except Exception as exc:  # whatever the database said, the run goes on
                problem = type(exc).__name__
            if attempt < self._flush_attempts:
                logger.warning(
                    "run %s: stream events %d to %d not stored (%s), trying again",
                    self.run_id,
                    batch[0][0],
                    batch[-1][0],
                    problem,
                )
                await asyncio.sleep(self._flush_backoff_s * 2 ** (attempt - 1))
        logger.error(
            "run %s: stream events %d to %d lost after %d tries (%s); readers from the "
            "database get an error event naming them",
            self.run_id,
            batch[0][0],
            batch[-1][0],
            self._flush_attempts,
            problem,
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

    async def subscribe(self, after: int = 0) -> AsyncGenerator[Event, None]:
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


def gap_event(first: int, last: int) -> Event:
    """The ``error`` event standing for lost events ``first`` to ``last``; numbered
    ``last``, so a client that reconnects with it as ``Last-Event-ID`` is not told twice."""
    data = {
        "error": "StreamEventsLost",
        "message": (
            f"Events {first} to {last} of this run were lost (the server could not store "
            f"them); the stream goes on from event {last + 1}."
        ),
        "lost_from": first,
        "lost_to": last,
    }
    return last, "error", json_dumpb(data)


def with_gaps(events: Sequence[Event], after: int) -> list[Event]:
    """Stored ``events``, read after number ``after``, with a :func:`gap_event` wherever
    numbers are missing: events are numbered without holes, so a hole is a loss."""
    out: list[Event] = []
    for event in events:
        if event[0] > after + 1:
            out.append(gap_event(after + 1, event[0] - 1))
        out.append(event)
        after = event[0]
    return out
