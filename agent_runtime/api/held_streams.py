"""Streams, joins and waits: each holds one of its tenant's open-stream slots
(:mod:`agent_runtime.tenancy.open_streams`) from the moment it is accepted until it ends.

A route declares :data:`HeldSlot` after its scope, so that a key without the scope is a
403, never a 429. The dependency takes the slot (429 ``open_streams`` with ``Retry-After``
when the tenant holds all it may) and gives it back once the answer is over, however it
ends: done, failed, or the client gone (FastAPI runs a dependency's exit after the
response, streamed ones included). While it is held:

* a stream (:func:`held_sse`) ends cleanly after ``AGENT_STREAM_MAX_LIFETIME_S`` (the
  request deadline stops at its first byte; the client may reconnect with
  ``Last-Event-ID``), or at once when its slot is ended: its key revoked or rotated, its
  tenant disabled;
* a wait or a join (:func:`held`), or a stream before its first event
  (:func:`until_ended`), answers 401, as the key would now, when its slot is ended; its
  deadline is the route's (``AGENT_WAIT_TIMEOUT_S``: nothing is sent before).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.responses import StreamingResponse

from agent_runtime.api.deps import CurrentPrincipal, Services, ServicesDep
from agent_runtime.core.errors import RateLimited, Unauthorized
from agent_runtime.core.records import Principal
from agent_runtime.protocol.sse import SSE_MEDIA_TYPE, sse_headers, with_heartbeats
from agent_runtime.tenancy.auth import INVALID_KEY_MESSAGE, extract_api_key, hash_key
from agent_runtime.tenancy.open_streams import OpenStream
from agent_runtime.tenancy.stream_slots import OPEN_STREAMS

logger = logging.getLogger(__name__)
T = TypeVar("T")


@contextlib.asynccontextmanager
async def holding(
    request: Request, services: Services, principal: Principal
) -> AsyncIterator[OpenStream]:
    """A slot for this request's stream while the block runs (429 when none is free)."""
    key = extract_api_key(request.headers)
    assert services.streams is not None, "Services.__post_init__ builds it"
    try:
        stream = await services.streams.open(principal, hash_key(key) if key else None)
    except RateLimited:
        services.metrics.rate_limited.inc(tags={"limit": OPEN_STREAMS})
        raise
    try:
        yield stream
    finally:
        stream.release()


async def hold_stream(
    request: Request, services: ServicesDep, principal: CurrentPrincipal
) -> AsyncIterator[OpenStream]:
    """A slot for this request's stream, given back when its answer is over."""
    async with holding(request, services, principal) as stream:
        yield stream


HeldSlot = Annotated[OpenStream, Depends(hold_stream)]


def held_sse(
    services: Services,
    stream: OpenStream,
    events: AsyncIterator[bytes],
    headers: dict[str, str] | None = None,
) -> StreamingResponse:
    """``events`` as SSE with heartbeats, for as long as the slot allows (see the module)."""

    async def body() -> AsyncIterator[bytes]:
        lifetime_s = services.settings.http.stream_max_lifetime_s
        try:
            async for frame in with_heartbeats(events, until=stream.ended, max_s=lifetime_s):
                yield frame
        finally:
            await _give_back(stream)
        if stream.ended.is_set():
            logger.info("stream ended: %s", stream.reason)

    return StreamingResponse(
        body(), media_type=SSE_MEDIA_TYPE, headers={**sse_headers(), **(headers or {})}
    )


async def held(stream: OpenStream, work: Awaitable[T]) -> T:
    """A wait's or a join's answer: ``work``'s result, the slot given back with it; 401 if
    the slot is ended first (``work`` is then cancelled)."""
    try:
        return await until_ended(stream, work)
    finally:
        await _give_back(stream)


async def until_ended(stream: OpenStream, work: Awaitable[T]) -> T:
    """``work``'s result; 401 if the slot is ended first (``work`` is then cancelled)."""
    task = asyncio.ensure_future(work)
    ended = asyncio.ensure_future(stream.ended.wait())
    try:
        done, _ = await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (ended, task):
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
    if task in done:
        return task.result()
    logger.info("wait ended: %s", stream.reason)
    raise Unauthorized(INVALID_KEY_MESSAGE)


async def _give_back(stream: OpenStream) -> None:
    """The slot back before the answer's end leaves, so that the client's next request
    finds it free; a cancelled request (the client gone) does not wait for Redis."""
    stream.release()
    current = asyncio.current_task()
    if current is None or not current.cancelling():
        await stream.given_back()
