"""API keys: how they are made, parsed and checked, and the cached authenticator.

A key reads ``ar_<key_id>_<secret>``. ``key_id`` (12 hex characters) is public: it is the
stored record's primary key and what logs and metrics may show. Only the SHA-256 of the
whole key is stored. The raw key is never logged nor put in an exception message.

Revocation, rotation and disabled tenants reach every replica within the cache TTL
(``AGENT_AUTH_CACHE_TTL_S``, 2 s by default): a cached lookup (key and tenant, read
together) is used for at most that long. With Redis configured, :class:`AuthInvalidations`
also tells every replica at once (pub/sub), so the TTL is only the bound when Redis is
away; a replica that (re)subscribes drops its whole cache, as it may have missed messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from agent_runtime.config.settings import LimitSettings
from agent_runtime.core.errors import Unauthorized
from agent_runtime.core.records import ApiKeyRecord, Principal, Scope, Tenant, normalise_scopes

logger = logging.getLogger(__name__)

KEY_PREFIX = "ar"
KEY_ID_HEX_CHARS = 12
SECRET_BYTES = 32
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet (which includes "_").
_KEY_RE = re.compile(r"ar_(?P<key_id>[0-9a-f]{12})_[A-Za-z0-9_-]{43}")
_MAX_KEY_CHARS = 128  # longer input is rejected before the regex runs

MISSING_KEY_MESSAGE = (
    "missing API key: send it in the x-api-key header or as Authorization: Bearer <key>"
)
# One message for every rejection, so a caller cannot tell an unknown id from a bad secret.
INVALID_KEY_MESSAGE = "invalid API key"

DEFAULT_CACHE_ENTRIES = 10_000
# A cached key whose hash does not match is read again (it may have been rotated), but
# no more often than this, so a flood of wrong secrets cannot hammer the database.
REFRESH_AFTER_S = 0.25
INVALIDATION_CHANNEL = "agent:auth:invalidate"


def hash_key(raw: str) -> str:
    """SHA-256 hex digest of the whole key.

    A fast unsalted hash is right here: keys carry 256 random bits, so there is nothing
    to brute-force, and a slow KDF (bcrypt, argon2) would cost CPU on every request.
    """
    return hashlib.sha256(raw.encode()).hexdigest()


def new_secret(key_id: str) -> tuple[str, str]:
    """A fresh plaintext key for ``key_id`` and its hash (what rotation stores)."""
    raw = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return raw, hash_key(raw)


def key_prefix(key_id: str) -> str:
    """The public start of a key, what listings show instead of the key."""
    return f"{KEY_PREFIX}_{key_id}_"


def generate_key(
    tenant_id: str, name: str = "", scopes: Iterable[Scope] | None = None
) -> tuple[str, ApiKeyRecord]:
    """A new key: the plaintext (show it once, never store it) and the record to store.

    ``scopes`` unset or empty: ``read`` and ``run``
    (:data:`agent_runtime.core.records.DEFAULT_SCOPES`).
    """
    key_id = secrets.token_hex(KEY_ID_HEX_CHARS // 2)
    raw, digest = new_secret(key_id)
    record = ApiKeyRecord(
        key_id=key_id,
        tenant_id=tenant_id,
        key_hash=digest,
        name=name,
        created_at=datetime.now(UTC),
        scopes=normalise_scopes(list(scopes) if scopes is not None else None),
    )
    return raw, record


def parse_key(raw: str) -> str:
    """The key's public id; :class:`Unauthorized` if the key is not well formed."""
    match = _KEY_RE.fullmatch(raw) if len(raw) <= _MAX_KEY_CHARS else None
    if match is None:
        raise Unauthorized(INVALID_KEY_MESSAGE)
    return match["key_id"]


def verify_key(raw: str, record: ApiKeyRecord) -> bool:
    """Whether ``raw`` is the key ``record`` was made from (constant-time comparison)."""
    return hmac.compare_digest(hash_key(raw), record.key_hash)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # Starlette's Headers are case-insensitive already; plain dicts may not be.
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    if value is None or not value.strip():
        return None
    return value.strip()


def extract_api_key(headers: Mapping[str, str]) -> str | None:
    """The key from ``x-api-key``, else from ``Authorization: Bearer <key>``; None if absent."""
    key = _header(headers, "x-api-key")
    if key is not None:
        return key
    authorization = _header(headers, "authorization")
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class KeyStore(Protocol):
    """What the authenticator reads; the metadata store implements it."""

    async def get_key(self, key_id: str) -> ApiKeyRecord | None: ...

    async def get_tenant(self, tenant_id: str) -> Tenant | None: ...


@dataclass(frozen=True, slots=True)
class _Entry:
    record: ApiKeyRecord | None
    tenant: Tenant | None
    loaded_at: float
    expires_at: float


class _TtlLru:
    """A bounded LRU of lookups, each valid for a fixed time."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def get(self, key_id: str, now: float) -> _Entry | None:
        entry = self._entries.get(key_id)
        if entry is None:
            return None
        if entry.expires_at <= now:
            del self._entries[key_id]
            return None
        self._entries.move_to_end(key_id)
        return entry

    def put(self, key_id: str, entry: _Entry) -> None:
        self._entries[key_id] = entry
        self._entries.move_to_end(key_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def pop(self, key_id: str) -> None:
        self._entries.pop(key_id, None)

    def pop_tenant(self, tenant_id: str) -> None:
        stale = [
            key_id
            for key_id, entry in self._entries.items()
            if entry.record is not None and entry.record.tenant_id == tenant_id
        ]
        for key_id in stale:
            del self._entries[key_id]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


InvalidationKind = Literal["key", "tenant"]


class AuthInvalidations:
    """Redis pub/sub of revoked keys and disabled tenants, so every replica forgets them
    at once. Publishing never fails an admin action: the cache TTL still bounds it."""

    def __init__(self, url: str, timeout_s: float, channel: str = INVALIDATION_CHANNEL) -> None:
        self.channel = channel
        self._timeout_s = timeout_s
        self._publisher = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        # No read timeout on the subscriber: it waits for messages; health checks find a
        # dead connection.
        self._subscriber = Redis.from_url(
            url, socket_connect_timeout=timeout_s, health_check_interval=5
        )

    @classmethod
    def from_settings(cls, limits: LimitSettings) -> AuthInvalidations | None:
        if limits.redis_url is None:
            return None
        return cls(limits.redis_url.get_secret_value(), limits.redis_timeout_s)

    async def publish(self, kind: InvalidationKind, ident: str) -> bool:
        try:
            await self._publisher.publish(self.channel, f"{kind}:{ident}")
        except (redis_errors.RedisError, OSError) as exc:
            logger.warning("could not publish the %s invalidation: %s", kind, type(exc).__name__)
            return False
        return True

    async def listen(
        self,
        on_message: Callable[[str, str], None],
        on_subscribed: Callable[[], None],
        retry_s: float = 1.0,
    ) -> None:
        """Call ``on_message(kind, id)`` for every message, until cancelled; reconnects."""
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                on_subscribed()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    data = message.get("data")
                    text = data.decode() if isinstance(data, bytes) else str(data)
                    kind, _, ident = text.partition(":")
                    on_message(kind, ident)
            except (redis_errors.RedisError, OSError) as exc:
                logger.warning(
                    "auth invalidations: subscription lost (%s); retrying", type(exc).__name__
                )
            finally:
                with contextlib.suppress(redis_errors.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            await asyncio.sleep(retry_s)

    async def close(self) -> None:
        await self._publisher.aclose()
        await self._subscriber.aclose()


class Authenticator:
    """Turns a raw key into a :class:`Principal`, with a short per-replica lookup cache.

    Known and unknown key ids are cached for ``cache_ttl_s`` (0 disables the cache), so a
    hot key costs no database round trip; the hash is still compared on every call. Unknown
    ids live in their own LRU so a flood of random keys cannot evict the valid ones. A
    cached key and its tenant are read together and expire together, so a revocation or a
    disabled tenant reaches other replicas within ``cache_ttl_s``; :meth:`forget_key` and
    :meth:`forget_tenant` are immediate on this replica and, with ``invalidations``, on
    every replica listening (:meth:`start`). A key rotated elsewhere is re-read when its
    new secret does not match the cached hash (at most every :data:`REFRESH_AFTER_S`).
    """

    def __init__(
        self,
        store: KeyStore,
        cache_ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_cache_entries: int = DEFAULT_CACHE_ENTRIES,
        invalidations: AuthInvalidations | None = None,
    ) -> None:
        self._store = store
        self._ttl_s = cache_ttl_s
        self._clock = clock
        self._known = _TtlLru(max_cache_entries)
        self._unknown = _TtlLru(max_cache_entries)
        self._invalidations = invalidations
        self._listener: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def authenticate(self, raw_key: str | None) -> Principal:
        if not raw_key:
            raise Unauthorized(MISSING_KEY_MESSAGE)
        key_id = parse_key(raw_key)
        entry, cached = await self._lookup(key_id)
        if (
            cached
            and entry.record is not None
            and not verify_key(raw_key, entry.record)
            and self._clock() - entry.loaded_at >= REFRESH_AFTER_S
        ):
            entry = await self._load(key_id)  # rotated since it was cached?
        record, tenant = entry.record, entry.tenant
        reason = None
        if record is None:
            reason = "unknown key id"
        elif not verify_key(raw_key, record):
            reason = "wrong secret"
        elif record.revoked:
            reason = "revoked"
        elif tenant is None:
            reason = "unknown tenant"
        elif tenant.disabled:
            reason = "tenant disabled"
        if reason is not None or record is None:
            logger.debug("API key rejected: key_id=%s reason=%s", key_id, reason)
            raise Unauthorized(INVALID_KEY_MESSAGE)
        return Principal(
            tenant_id=record.tenant_id, key_id=record.key_id, scopes=tuple(record.scopes)
        )

    def invalidate(self, key_id: str) -> None:
        """Forget a cached lookup (after a revocation or a new key on this replica)."""
        self._known.pop(key_id)
        self._unknown.pop(key_id)

    def invalidate_tenant(self, tenant_id: str) -> None:
        """Forget the cached keys of a tenant (disabled or enabled on this replica)."""
        self._known.pop_tenant(tenant_id)

    def clear(self) -> None:
        self._known.clear()
        self._unknown.clear()

    async def forget_key(self, key_id: str) -> None:
        """After a key changed (revoked, rotated): here now, and on every listening replica."""
        self.invalidate(key_id)
        if self._invalidations is not None:
            await self._invalidations.publish("key", key_id)

    async def forget_tenant(self, tenant_id: str) -> None:
        """After a tenant was disabled or enabled: here now, and on every listening replica."""
        self.invalidate_tenant(tenant_id)
        if self._invalidations is not None:
            await self._invalidations.publish("tenant", tenant_id)

    async def start(self, ready_timeout_s: float = 2.0) -> None:
        """Listen to ``invalidations`` in the background; waits (a bounded time) for the
        subscription, and carries on without it (the TTL still holds) if Redis is away."""
        if self._invalidations is None or self._listener is not None:
            return
        self._listener = asyncio.get_running_loop().create_task(
            self._invalidations.listen(self._on_message, self._on_subscribed),
            name="auth-invalidations",
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), ready_timeout_s)

    def loops(self) -> list[asyncio.Task[None]]:
        return [] if self._listener is None else [self._listener]

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._invalidations is not None:
            await self._invalidations.close()

    def _on_subscribed(self) -> None:
        self.clear()  # messages published while we were away are lost: start afresh
        self.subscribed.set()

    def _on_message(self, kind: str, ident: str) -> None:
        if kind == "key":
            self.invalidate(ident)
        elif kind == "tenant":
            self.invalidate_tenant(ident)

    async def _lookup(self, key_id: str) -> tuple[_Entry, bool]:
        now = self._clock()
        cached = self._known.get(key_id, now) or self._unknown.get(key_id, now)
        if cached is not None:
            return cached, True
        return await self._load(key_id), False

    async def _load(self, key_id: str) -> _Entry:
        loaded_at = self._clock()
        record = await self._store.get_key(key_id)
        tenant = await self._store.get_tenant(record.tenant_id) if record is not None else None
        entry = _Entry(
            record=record, tenant=tenant, loaded_at=loaded_at, expires_at=loaded_at + self._ttl_s
        )
        if self._ttl_s > 0:
            self._unknown.pop(key_id)
            (self._known if record is not None else self._unknown).put(key_id, entry)
        return entry
