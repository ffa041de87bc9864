"""What the ingress refuses before any route runs, and what it adds to every answer.

:class:`RequestGuard` is plain ASGI middleware (no buffering of responses, streams pass
through untouched), inside the app's ``observe`` middleware so that its refusals are
counted, logged and carry ``x-request-id`` like any other answer:

* headers: more than ``AGENT_MAX_HEADERS``, or more than ``AGENT_MAX_HEADER_BYTES`` in
  all: 431 ``headers_too_large``;
* body: past ``AGENT_MAX_REQUEST_BYTES`` (413), counted as it arrives, so a chunked body
  without ``Content-Length`` is bounded too;
* JSON nesting deeper than ``AGENT_MAX_JSON_DEPTH``: 422 ``invalid_request``, decided on
  the raw bytes (C-speed scans, linear) before ``json.loads`` or pydantic recurse into it;
  so is text no database can store (NUL, unpaired surrogates) in a body or the URL;
* a deadline per route: ``AGENT_REQUEST_TIMEOUT_S`` for ordinary routes,
  ``AGENT_WAIT_TIMEOUT_S`` for those that wait for a run or a model (:data:`WAIT_ROUTES`);
  past it, 504 ``timeout``. The deadline covers the time until the answer starts: a
  stream's events, once its first one is out, run until the stream ends, at the latest
  ``AGENT_STREAM_MAX_LIFETIME_S`` later (``agent_runtime/api/held_streams.py``; heartbeats
  keep the connection alive meanwhile);
* security headers on every answer: ``X-Content-Type-Options: nosniff``,
  ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``, ``Cache-Control: no-store``
  (unless the route set its own), a ``Content-Security-Policy`` that allows nothing (but
  on the interactive docs pages), and ``Strict-Transport-Security`` when
  ``AGENT_HSTS_MAX_AGE_S`` is set (only behind TLS).

CORS is off unless ``AGENT_CORS_ORIGINS`` lists origins (:func:`install_hardening`).
Every refusal has the runtime's JSON error shape (``{"detail", "error", ...}``).
"""

from __future__ import annotations

import asyncio
import codecs
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from itertools import accumulate
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware

from agent_runtime.config.http_settings import HttpSettings
from agent_runtime.core.errors import (
    AgentRuntimeError,
    DeadlineExceeded,
    HeadersTooLarge,
    InvalidRequest,
    PayloadTooLarge,
    error_body,
    http_status,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes that wait for a run, a model or a stream's first event: the long deadline.
WAIT_ROUTES = frozenset(
    {
        "/runs/wait",
        "/threads/{thread_id}/runs/wait",
        "/threads/{thread_id}/runs/{run_id}/join",
        "/threads/{thread_id}/runs/{run_id}/cancel",
        "/runs/stream",
        "/threads/{thread_id}/runs/stream",
        "/threads/{thread_id}/runs/{run_id}/stream",
        "/v1/chat/completions",
        "/v1/embeddings",
    }
)
DOCS_PATHS = ("/docs", "/redoc")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STRINGS = re.compile(rb'"[^"]*"')
# JSON escapes of text Postgres cannot store: NUL, and UTF-16 surrogates that are not a pair.
_HIGH = rb"\\u[dD][89abAB][0-9a-fA-F]{2}"
_LOW = rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_UNSTORABLE = re.compile(rb"\\u0000|" + _HIGH + rb"(?!" + _LOW + rb")|(?<!" + _HIGH + rb")" + _LOW)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
for _open in b"[{":
    _STEP[_open] = 1
for _close in b"]}":
    _STEP[_close] = -1


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON text ``body`` nests arrays and objects deeper than ``limit``.

    Exact for valid JSON (invalid JSON is refused by the parser anyway). Escapes go first
    (``\\\\`` then ``\\"``: outside strings JSON has no backslashes), then strings, so that
    brackets inside strings do not count; what is left is only brackets, whose running
    depth is summed in C. Bodies with fewer brackets than the limit skip all of it.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = _STRINGS.sub(b"", unescaped).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


def unstorable_text(body: bytes) -> bool:
    """Whether the JSON text ``body`` holds a NUL character or an unpaired UTF-16
    surrogate (the escapes backslash-u-0000, or a lone one in D800-DFFF): valid JSON, but
    no Postgres text can store it, so it is refused up front instead of failing deep in a
    query (a 500)."""
    if b"\\u" not in body:
        return False
    return _UNSTORABLE.search(body.replace(b"\\\\", b"")) is not None


_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE)  # UTF-32's start so too


def not_plain_utf8(body: bytes) -> bool:
    """Whether ``body`` starts as UTF-16 or UTF-32 text (a byte-order mark, or a NUL byte
    among its first four, as JSON's encoding detection reads them) or with UTF-8's mark."""
    return body.startswith(_BOMS) or b"\x00" in body[:4]


def security_headers(settings: HttpSettings) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
    ]
    if settings.hsts_max_age_s is not None:
        value = f"max-age={settings.hsts_max_age_s}; includeSubDomains".encode()
        headers.append((b"strict-transport-security", value))
    return headers


_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


class RequestGuard:
    """The limits and headers of the module's docstring, as ASGI middleware."""

    def __init__(self, app: ASGIApp, settings: HttpSettings, max_body_bytes: int) -> None:
        self.app = app
        self.settings = settings
        self.max_body_bytes = max_body_bytes
        self._headers = security_headers(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        extra = self._headers if scope["path"].startswith(DOCS_PATHS) else [*self._headers, _CSP]

        async def send_secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(k, v) for k, v in extra if k not in present]
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        try:
            self._check_headers(scope)
            self._check_url(scope)
            receive = await self._read_body(scope, receive)
        except AgentRuntimeError as error:
            await _refuse(error, scope, receive, send_secured)
            return
        deadline = Deadline(scope, self.settings)
        try:
            async with asyncio.timeout(None) as timer:
                deadline.arm(timer, lambda: started)
                try:
                    await self.app(scope, receive, send_secured)
                finally:
                    deadline.disarm()
        except TimeoutError:
            if started or not deadline.expired:
                raise
            late = DeadlineExceeded(
                f"no answer within {deadline.limit_s:g} s; the request was abandoned",
                timeout_s=deadline.limit_s,
            )
            await _refuse(late, scope, receive, send_secured)

    def _check_url(self, scope: Scope) -> None:
        # A NUL in a path or query parameter reached the database, which refused it (500).
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            raise InvalidRequest(
                "invalid request: the URL holds a NUL character (%00)", field="url"
            )

    def _check_headers(self, scope: Scope) -> None:
        headers = scope.get("headers", [])
        size = sum(len(name) + len(value) for name, value in headers)
        if len(headers) > self.settings.max_headers or size > self.settings.max_header_bytes:
            raise HeadersTooLarge(
                f"request headers too large: {len(headers)} headers, {size} bytes; the limits "
                f"are {self.settings.max_headers} headers and {self.settings.max_header_bytes} "
                "bytes",
                max_headers=self.settings.max_headers,
                max_header_bytes=self.settings.max_header_bytes,
            )

    async def _read_body(self, scope: Scope, receive: Receive) -> Receive:
        """The whole body, bounded and depth-checked, then replayed to the app."""
        if scope["method"] not in _BODY_METHODS:
            return receive
        limit = self.max_body_bytes
        json_body = True  # what the API takes; a custom app's other types pass as they are
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise _too_large(int(value), limit)
            if name == b"content-type":
                json_body = b"json" in value.lower()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client left before sending its body: let the app see it.
                return _replay(b"".join(chunks), receive, first=message)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit, more=message.get("more_body", False))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_body and not_plain_utf8(body):
            # Python's JSON parser reads these too, past the byte checks below.
            raise InvalidRequest(
                "invalid request: a JSON body must be UTF-8 without a byte-order mark",
                field="body",
            )
        if body.lstrip()[:1] in (b"{", b"["):
            depth = self.settings.max_json_depth
            if json_depth_exceeds(body, depth):
                raise InvalidRequest(
                    f"invalid request: JSON nested deeper than {depth} levels",
                    field="body",
                    max_depth=depth,
                )
            if unstorable_text(body):
                raise InvalidRequest(
                    "invalid request: the body's text holds a NUL character or an unpaired "
                    "UTF-16 surrogate, which cannot be stored",
                    field="body",
                )
        return _replay(body, receive)


class Deadline:
    """The route's deadline, checked when the short one passes: by then routing has put
    the matched route in the scope, so wait routes get the long one."""

    def __init__(self, scope: Scope, settings: HttpSettings) -> None:
        self._scope = scope
        self._settings = settings
        self._start = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self.limit_s = settings.request_timeout_s
        self.expired = False

    def arm(self, timer: asyncio.Timeout, started: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()

        def check() -> None:
            if started():
                return  # the answer is on its way: no deadline for the rest of it
            route = getattr(self._scope.get("route"), "path", None)
            if route in WAIT_ROUTES and self.limit_s < self._settings.wait_timeout_s:
                self.limit_s = self._settings.wait_timeout_s
                remaining = self._start + self.limit_s - time.monotonic()
                self._handle = loop.call_later(max(0.0, remaining), check)
                return
            self.expired = True
            timer.reschedule(loop.time())

        self._handle = loop.call_later(self.limit_s, check)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


def _too_large(size: int, limit: int, more: bool = False) -> PayloadTooLarge:
    at_least = "at least " if more else ""
    return PayloadTooLarge(
        f"request body of {at_least}{size} bytes exceeds the limit of {limit} bytes",
        limit=limit,
    )


def _replay(body: bytes, receive: Receive, first: Message | None = None) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if first is not None:
        pending.append(first)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _refuse(error: AgentRuntimeError, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse(error_body(error), status_code=http_status(error))
    await response(scope, receive, send)


CORS_HEADERS = ["authorization", "x-api-key", "x-admin-key", "content-type", "last-event-id"]
CORS_EXPOSED = [
    "x-request-id",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Content-Location",
    "Location",
    "Server-Timing",
]


def install_hardening(app: FastAPI, settings: HttpSettings, max_body_bytes: int) -> None:
    """The guard. Call before adding the middleware that must see its refusals (middleware
    added later wraps what came before)."""
    app.add_middleware(RequestGuard, settings=settings, max_body_bytes=max_body_bytes)


def install_cors(app: FastAPI, settings: HttpSettings) -> None:
    """CORS for ``AGENT_CORS_ORIGINS`` only (none: no CORS headers, browsers refuse
    cross-origin calls). Keys travel in headers, never cookies: no credentials mode.
    Call last: CORS must answer preflights before anything else runs."""
    if not settings.cors_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=CORS_HEADERS,
        expose_headers=CORS_EXPOSED,
        allow_credentials=False,
        max_age=600,
    )
