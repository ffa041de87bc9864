"""Run webhooks: when a run with ``webhook`` ends, its result is POSTed to that URL.

The payload is the Platform's: the run (as ``GET /threads/{t}/runs/{r}`` shows it) with
its final ``status``, the thread's ``values``, ``webhook_sent_at`` and, for a failed
run, ``error``. A webhook is a request the server makes on a tenant's behalf, so URLs are
checked when the run is created (``http``/``https`` only) and, unless
``AGENT_WEBHOOK_ALLOW_PRIVATE`` is set, may not point at loopback, private or link-local
addresses (no reaching the cluster's own services). Delivery is best effort: a bounded
number of tries, each with a timeout, then a log line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from agent_runtime.core.errors import InvalidRequest
from agent_runtime.protocol.sse import json_dumpb

logger = logging.getLogger(__name__)

MAX_URL_CHARS = 2048


class WebhookSender:
    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        attempts: int = 3,
        allow_private: bool = False,
        enabled: bool = True,
    ) -> None:
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._allow_private = allow_private
        self._enabled = enabled

    async def check(self, url: str) -> str:
        """The URL if it may be called; :class:`InvalidRequest` (422) saying why not."""
        if not self._enabled:
            raise InvalidRequest("webhook: webhooks are disabled on this server")
        parts = urlsplit(url)
        if len(url) > MAX_URL_CHARS or parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest("webhook: must be an absolute http(s) URL")
        if not self._allow_private:
            for address in await _addresses(parts.hostname):
                if not address.is_global:
                    raise InvalidRequest(
                        "webhook: the host resolves to a private or loopback address, which "
                        "this server does not call (set AGENT_WEBHOOK_ALLOW_PRIVATE=true to "
                        "allow it)"
                    )
        return url

    async def send(self, url: str, payload: dict[str, Any]) -> bool:
        """POST ``payload``; True once the receiver answered 2xx."""
        body = json_dumpb({**payload, "webhook_sent_at": datetime.now(UTC).isoformat()})
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            for attempt in range(1, self._attempts + 1):
                try:
                    response = await client.post(
                        url, content=body, headers={"content-type": "application/json"}
                    )
                    if response.is_success:
                        return True
                    outcome = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                logger.warning(
                    "webhook for run %s: try %d/%d failed (%s)",
                    payload.get("run_id"),
                    attempt,
                    self._attempts,
                    outcome,
                )
                await asyncio.sleep(0.5 * attempt)
        return False


async def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        raise InvalidRequest(f"webhook: cannot resolve host {host!r}") from None
    return [ipaddress.ip_address(str(info[4][0])) for info in infos]
