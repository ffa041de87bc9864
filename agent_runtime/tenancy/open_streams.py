"""The streams, joins and waits one ingress replica holds open, and when they must end.

Each holds one of its tenant's slots (:mod:`agent_runtime.tenancy.stream_slots`), at most
``AGENT_MAX_OPEN_STREAMS`` per tenant (shared by every replica through Redis); past it
:meth:`OpenStreams.open` is :class:`RateLimited` (429, ``limit``: ``open_streams``,
``Retry-After``). Whoever opened one gives it back (:meth:`OpenStream.release`) when it
ends, however it ends.

An open stream's :attr:`OpenStream.ended` is set when its key is revoked (or rotated: the
secret that opened it no longer works) or its tenant disabled or removed
(:mod:`agent_runtime.tenancy.key_standing`); its holder then ends it. That is checked

* at once, when this replica hears of a change: the admin API on this replica
  (:meth:`OpenStreams.forget_key`, :meth:`OpenStreams.forget_tenant`), and any replica or
  the CLI through the authenticators' Redis channel
  (:class:`agent_runtime.tenancy.auth.AuthInvalidations`), to which :meth:`start` listens;
* and for every open stream every third of ``AGENT_OPEN_STREAMS_LEASE_S``, when their
  leases are renewed: the bound without Redis, or for a message missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection

from agent_runtime.config.settings import LimitSettings
from agent_runtime.core.errors import AgentRuntimeError, RateLimited
from agent_runtime.core.records import Principal
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.auth import AuthInvalidations
from agent_runtime.tenancy.key_standing import Holder, refusals
from agent_runtime.tenancy.rate_limiter import UnavailableHook
from agent_runtime.tenancy.stream_slots import OPEN_STREAMS, Slot, StreamSlots

logger = logging.getLogger(__name__)

# A stream's length is unknown; this is how long a refused caller is told to wait.
RETRY_AFTER_S = 5.0


class OpenStream:
    """One open stream's slot, and whether it must end (:attr:`ended`, :attr:`reason`)."""

    def __init__(self, owner: OpenStreams, holder: Holder, slot: Slot) -> None:
        self.holder = holder
        self.slot = slot
        self.ended = asyncio.Event()
        self.reason: str | None = None
        self._owner = owner
        self._released = False
        self._removal: asyncio.Task[None] | None = None

    def end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.reason = reason
            self.ended.set()

    def release(self) -> None:
        """Give the slot back; once, whatever calls it again (never blocks: it runs in
        cleanups of cancelled requests)."""
        if not self._released:
            self._released = True
            self._removal = self._owner.released(self)

    async def given_back(self) -> None:
        """Until Redis has the slot back (at once in process): before an answer ends, so
        that the client's next request finds it free."""
        if self._removal is not None:
            await asyncio.shield(self._removal)


class OpenStreams:
    """This replica's open streams (see the module). :meth:`start` listens for changes
    and renews leases; :meth:`close` stops it and closes the slots' Redis client."""

    def __init__(
        self,
        slots: StreamSlots,
        store: MetadataStore,
        *,
        max_per_tenant: int,
        invalidations: AuthInvalidations | None = None,
    ) -> None:
        self._slots = slots
        self._store = store
        self.max_per_tenant = max_per_tenant
        self._invalidations = invalidations
        self._open: set[OpenStream] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls,
        limits: LimitSettings,
        store: MetadataStore,
        *,
        on_unavailable: UnavailableHook | None = None,
    ) -> OpenStreams:
        return cls(
            StreamSlots.from_settings(limits, on_unavailable=on_unavailable),
            store,
            max_per_tenant=limits.max_open_streams,
            invalidations=AuthInvalidations.from_settings(limits),
        )

    async def open(self, principal: Principal, key_hash: str | None) -> OpenStream:
        """A slot for a stream of ``principal`` (opened with the key hashing to
        ``key_hash``); RateLimited when its tenant holds all it may."""
        maximum = self.max_per_tenant
        slot = await self._slots.take(principal.tenant_id, maximum)
        if slot is None:
            raise RateLimited(
                f"open streams limit of {maximum} for this tenant reached (streams, joins "
                "and waits); retry when one ends",
                retry_after=RETRY_AFTER_S,
                limit=OPEN_STREAMS,
                maximum=maximum,
                remaining=0,
            )
        stream = OpenStream(self, Holder(principal.tenant_id, principal.key_id, key_hash), slot)
        self._open.add(stream)
        self._tick()
        return stream

    def released(self, stream: OpenStream) -> asyncio.Task[None] | None:
        self._open.discard(stream)
        return self._slots.give_back(stream.slot)

    def forget_key(self, key_id: str) -> None:
        """A key changed (revoked, rotated): check the streams it opened."""
        self._check_soon([s for s in self._open if s.holder.key_id == key_id])

    def forget_tenant(self, tenant_id: str) -> None:
        """A tenant changed (disabled): check its streams."""
        self._check_soon([s for s in self._open if s.holder.tenant_id == tenant_id])

    async def check(self, streams: Collection[OpenStream]) -> None:
        """End those of ``streams`` whose key or tenant may no longer act."""
        refused = await refusals(self._store, {s.holder for s in streams})
        for stream in streams:
            reason = refused.get(stream.holder)
            if reason is not None:
                logger.info("open stream ended: %s", reason)
                stream.end(reason)

    async def start(self, ready_timeout_s: float = 2.0) -> None:
        """Listen for revocations over Redis (a bounded wait for the subscription; without
        it the periodic check still holds) and renew leases."""
        self._tick()
        if self._invalidations is None or self._listener is not None:
            return
        subscribed = asyncio.Event()

        def on_subscribed() -> None:
            self._check_soon(list(self._open))  # messages sent while away are lost
            subscribed.set()

        self._listener = asyncio.get_running_loop().create_task(
            self._invalidations.listen(self._on_message, on_subscribed),
            name="open-streams-invalidations",
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscribed.wait(), ready_timeout_s)

    def loops(self) -> list[asyncio.Task[None]]:
        return [task for task in (self._ticker, self._listener) if task is not None]

    async def close(self) -> None:
        for task in (self._ticker, self._listener, *self._tasks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._ticker = self._listener = None
        if self._invalidations is not None:
            await self._invalidations.close()
        await self._slots.close()

    def _on_message(self, kind: str, ident: str) -> None:
        if kind == "key":
            self.forget_key(ident)
        elif kind == "tenant":
            self.forget_tenant(ident)

    def _check_soon(self, streams: list[OpenStream]) -> None:
        if not streams:
            return
        task = asyncio.get_running_loop().create_task(self._check_logged(streams))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check_logged(self, streams: Collection[OpenStream]) -> None:
        try:
            await self.check(streams)
        except AgentRuntimeError as exc:  # the periodic check tries again
            logger.warning("open streams not checked: %s", exc.message)

    def _tick(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(
                self._tick_loop(), name="open-streams"
            )

    async def _tick_loop(self) -> None:
        interval_s = self._slots.lease_s / 3
        while True:
            await asyncio.sleep(interval_s)
            held = list(self._open)
            if not held:
                continue
            try:
                await self._slots.renew(s.slot for s in held)
                await self.check(held)
            except AgentRuntimeError as exc:
                logger.warning("open streams not checked: %s", exc.message)
            except Exception:  # the loop outlives whatever one tick meets
                logger.exception("open streams: the tick failed; next one in %s s", interval_s)
