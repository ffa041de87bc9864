"""Run webhooks: when a run with ``webhook`` ends, its result is POSTed to that URL.

The payload is the Platform's: the run (as ``GET /threads/{t}/runs/{r}`` shows it) with
its final ``status``, the thread's ``values``, ``webhook_sent_at`` and, for a failed
run, ``error``. A webhook is a request the server makes on a tenant's behalf, so URLs are
checked when the run is created (``http``/``https`` only) and, unless
``AGENT_WEBHOOK_ALLOW_PRIVATE`` is set, may not point at loopback, private or link-local
addresses (no reaching the cluster's own services; :mod:`.webhook_addresses`).

Delivery is best effort, and bounded in every way a receiver could stretch it:

- the host is resolved once per delivery, every address checked again (the name may have
  changed since the run was created), and the request sent to a checked address (no second
  lookup for a rebinding name server to answer);
- each try, connect to last byte read, ends within ``timeout_s`` (HTTP clients' timeouts
  are per read, which a body trickling a byte at a time never trips);
- the answer's body is read only until :data:`MAX_RESPONSE_BYTES` have come (one network
  read, at most 64 KiB, at a time), then the connection is closed: a 2xx status is a
  delivery, whatever follows it or however slowly;
- a bounded number of tries, then a log line;
- at most ``max_in_flight`` deliveries at once on a replica: one past that is dropped at
  once, with a log line and the ``dropped`` outcome. Dropping rather than queueing keeps the
  replica's memory bounded (a queued delivery holds its payload, the thread's values) when
  receivers are slow, which is when deliveries pile up.

Each delivery ends with one outcome, reported to ``on_outcome`` (a metric):
``delivered``, ``failed`` (every try failed, or the name did not resolve), ``refused`` (it
resolved to a private address) or ``dropped``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from agent_runtime.core.errors import InvalidRequest
from agent_runtime.protocol.sse import json_dumpb
from agent_runtime.runs.webhook_addresses import (
    PRIVATE_TARGET,
    IPAddress,
    Resolver,
    is_public,
    pinned,
    refuse_private,
    resolve,
    system_resolver,
)

logger = logging.getLogger(__name__)

MAX_URL_CHARS = 2048
# What is read of an answer before the connection is closed: enough for a well-behaved
# receiver's short reply to be read whole, never a body the receiver chose to make huge.
MAX_RESPONSE_BYTES = 4096

WebhookOutcome = Literal["delivered", "failed", "refused", "dropped"]


class WebhookSender:
    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        attempts: int = 3,
        max_in_flight: int = 64,
        allow_private: bool = False,
        enabled: bool = True,
        resolver: Resolver = system_resolver,
        tls: ssl.SSLContext | None = None,
        on_outcome: Callable[[WebhookOutcome], None] | None = None,
    ) -> None:
        """``tls``: the trust for https receivers (None: the system's default roots)."""
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._max_in_flight = max_in_flight
        self._allow_private = allow_private
        self._enabled = enabled
        self._resolver = resolver
        self._tls: ssl.SSLContext | bool = tls if tls is not None else True
        self._on_outcome = on_outcome
        self._in_flight = 0

    async def check(self, url: str) -> str:
        """The URL if it may be called; :class:`InvalidRequest` (422) saying why not."""
        if not self._enabled:
            raise InvalidRequest("webhook: webhooks are disabled on this server")
        addresses = await self._resolve(_parse(url))
        if not self._allow_private:
            refuse_private(addresses)
        return url

    async def send(self, url: str, payload: dict[str, Any]) -> bool:
        """POST ``payload``; True once the receiver answered 2xx."""
        run_id = payload.get("run_id")
        if self._in_flight >= self._max_in_flight:
            logger.warning(
                "webhook for run %s dropped: %d deliveries already in flight on this replica "
                "(AGENT_WEBHOOK_MAX_IN_FLIGHT)",
                run_id,
                self._in_flight,
            )
            outcome: WebhookOutcome = "dropped"
        else:
            self._in_flight += 1
            try:
                outcome = await self._deliver(url, payload)
            finally:
                self._in_flight -= 1
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        return outcome == "delivered"

    async def _resolve(self, url: httpx.URL) -> list[IPAddress]:
        """The host's addresses; :class:`InvalidRequest` if it does not resolve in time."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await resolve(url.raw_host.decode("ascii"), self._resolver)
        except TimeoutError:
            raise InvalidRequest(f"webhook: cannot resolve host {url.host!r}") from None

    async def _deliver(self, url: str, payload: dict[str, Any]) -> WebhookOutcome:
        run_id = payload.get("run_id")
        try:
            target = _parse(url)  # checked when the run was created: a sender's bug if not
        except InvalidRequest as exc:
            logger.warning("webhook for run %s not sent: %s", run_id, exc.message)
            return "refused"
        try:
            # Resolved once: the addresses checked are the addresses connected to.
            addresses = await self._resolve(target)
        except InvalidRequest as exc:
            logger.warning("webhook for run %s not sent: %s", run_id, exc.message)
            return "failed"
        if not self._allow_private and not all(is_public(address) for address in addresses):
            logger.warning("webhook for run %s not sent: %s", run_id, PRIVATE_TARGET)
            return "refused"
        body = json_dumpb({**payload, "webhook_sent_at": datetime.now(UTC).isoformat()})
        async with httpx.AsyncClient(
            timeout=self._timeout_s, verify=self._tls, follow_redirects=False
        ) as client:
            for attempt in range(1, self._attempts + 1):
                # Each try the next address: one that refuses connections is not retried alone.
                address = addresses[(attempt - 1) % len(addresses)]
                problem = await self._try(client, target, address, body)
                if problem is None:
                    return "delivered"
                logger.warning(
                    "webhook for run %s: try %d/%d failed (%s)",
                    run_id,
                    attempt,
                    self._attempts,
                    problem,
                )
                if attempt < self._attempts:
                    await asyncio.sleep(0.5 * attempt)
        return "failed"

    async def _try(
        self, client: httpx.AsyncClient, url: httpx.URL, address: IPAddress, body: bytes
    ) -> str | None:
        """One POST within the deadline; None if the receiver answered 2xx, else why not."""
        target, headers, extensions = pinned(url, address)
        headers["content-type"] = "application/json"
        status: int | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                async with client.stream(
                    "POST", target, content=body, headers=headers, extensions=extensions
                ) as response:
                    status = response.status_code
                    await _read_some(response)
        except TimeoutError:
            if status is None:
                return "timed out"
        except httpx.HTTPError as exc:
            if status is None:
                return type(exc).__name__
        if status is not None and 200 <= status < 300:
            return None
        return f"HTTP {status}"


def _parse(url: str) -> httpx.URL:
    invalid = InvalidRequest("webhook: must be an absolute http(s) URL")
    if len(url) > MAX_URL_CHARS:
        raise invalid
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise invalid from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise invalid
    return parsed


async def _read_some(response: httpx.Response) -> None:
    """Read the answer's first bytes, raw (a compressed body is not inflated), and stop."""
    received = 0
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received >= MAX_RESPONSE_BYTES:
            return  # the caller's closing the response ends the read
