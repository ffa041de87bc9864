"""API keys: how they are made, parsed and checked, and the cached authenticator.

A key reads ``ar_<key_id>_<secret>``. ``key_id`` (12 hex characters) is public: it is the
stored record's primary key and what logs and metrics may show. Only the SHA-256 of the
whole key is stored. The raw key is never logged nor put in an exception message.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from runtime.errors import Unauthorized
from runtime.records import ApiKeyRecord, Principal, Tenant

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


def hash_key(raw: str) -> str:
    """SHA-256 hex digest of the whole key.

    A fast unsalted hash is right here: keys carry 256 random bits, so there is nothing
    to brute-force, and a slow KDF (bcrypt, argon2) would cost CPU on every request.
    """
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_key(tenant_id: str, name: str = "") -> tuple[str, ApiKeyRecord]:
    """A new key: the plaintext (show it once, never store it) and the record to store."""
    key_id = secrets.token_hex(KEY_ID_HEX_CHARS // 2)
    raw = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    record = ApiKeyRecord(
        key_id=key_id,
        tenant_id=tenant_id,
        key_hash=hash_key(raw),
        name=name,
        created_at=datetime.now(UTC),
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

    def __len__(self) -> int:
        return len(self._entries)


class Authenticator:
    """Turns a raw key into a :class:`Principal`, with a short per-replica lookup cache.

    Known and unknown key ids are cached for ``cache_ttl_s`` (0 disables the cache), so a
    hot key costs no database round trip; the hash is still compared on every call. Unknown
    ids live in their own LRU so a flood of random keys cannot evict the valid ones. A
    revocation reaches other replicas within ``cache_ttl_s``; :meth:`invalidate` is
    immediate on this one.
    """

    def __init__(
        self,
        store: KeyStore,
        cache_ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_cache_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        self._store = store
        self._ttl_s = cache_ttl_s
        self._clock = clock
        self._known = _TtlLru(max_cache_entries)
        self._unknown = _TtlLru(max_cache_entries)

    async def authenticate(self, raw_key: str | None) -> Principal:
        if not raw_key:
            raise Unauthorized(MISSING_KEY_MESSAGE)
        key_id = parse_key(raw_key)
        entry = await self._lookup(key_id)
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
        return Principal(tenant_id=record.tenant_id, key_id=record.key_id)

    def invalidate(self, key_id: str) -> None:
        """Forget a cached lookup (after a revocation or a new key on this replica)."""
        self._known.pop(key_id)
        self._unknown.pop(key_id)

    async def _lookup(self, key_id: str) -> _Entry:
        now = self._clock()
        cached = self._known.get(key_id, now) or self._unknown.get(key_id, now)
        if cached is not None:
            return cached
        record = await self._store.get_key(key_id)
        tenant = await self._store.get_tenant(record.tenant_id) if record is not None else None
        entry = _Entry(record=record, tenant=tenant, expires_at=self._clock() + self._ttl_s)
        if self._ttl_s > 0:
            (self._known if record is not None else self._unknown).put(key_id, entry)
        return entry
