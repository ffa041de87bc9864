"""The time the runtime reads, injectable so that tests move time instead of waiting.

Code that decides by elapsed time (circuit breakers, run leases) takes a :class:`Clock`
and defaults to :data:`SYSTEM_CLOCK`; a test passes one it advances by hand. Times that a
database or Redis computes itself (``TIME`` in a Lua script) stay theirs: replicas'
clocks never have to agree on those.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The wall-clock time, timezone-aware UTC (stored times, leases)."""
        ...

    def monotonic(self) -> float:
        """Seconds that never go back; only differences mean anything (timeouts)."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Clock = SystemClock()
