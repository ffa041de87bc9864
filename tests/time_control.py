"""Time in tests: a clock moved by hand, and waiting for a condition with a deadline.

Code that decides by elapsed time takes a :class:`~agent_runtime.core.clock.Clock`; a test
gives it a :class:`ManualClock` and calls :meth:`ManualClock.advance` instead of sleeping.
What happens elsewhere (a task, Redis, the database) is waited for with :func:`wait_for`,
which fails the test after a deadline instead of sleeping a guessed while.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any


class ManualClock:
    """A :class:`~agent_runtime.core.clock.Clock` that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._monotonic = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds


async def wait_for(
    condition: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.05
) -> Any:
    """Poll ``condition`` (sync or async) until it returns something truthy, and return
    that; fail the test after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)
