"""A per-replica cache of values loaded by key, kept ``ttl_s``; concurrent misses for one
key share one load. Tenant limits (``agent_runtime.tenancy.fair_use``) and budgets
(``agent_runtime.tenancy.budgets``) are read through it, so a burst of requests for one tenant
costs one query."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

V = TypeVar("V")

MAX_ENTRIES = 10_000  # past this, expired entries are swept before one is added


class TtlCache(Generic[V]):
    def __init__(
        self,
        load: Callable[[str], Awaitable[V]],
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, V]] = {}
        self._loading: dict[str, asyncio.Future[V]] = {}

    async def get(self, key: str) -> V:
        """The cached value, else one load shared by every concurrent caller (a failed
        load raises to each and caches nothing)."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fill(key))
            self._loading[key] = pending
            pending.add_done_callback(lambda done: self._loaded(key, done))
        return await asyncio.shield(pending)

    def last(self, key: str) -> V | None:
        """The last value loaded for ``key``, expired or not (None: none kept)."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None else None

    def invalidate(self, key: str | None = None) -> None:
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)

    async def _fill(self, key: str) -> V:
        value = await self._load(key)
        if self._ttl_s > 0:
            if len(self._entries) >= MAX_ENTRIES:
                now = self._clock()
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            self._entries[key] = (self._clock() + self._ttl_s, value)
        return value

    def _loaded(self, key: str, done: asyncio.Future[V]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]
        if not done.cancelled():
            done.exception()  # retrieved, so an unawaited failure logs no warning
