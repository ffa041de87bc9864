"""API key primitives and the cached authenticator."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from starlette.datastructures import Headers

from agent_runtime.core.errors import Unauthorized
from agent_runtime.core.records import ApiKeyRecord, Tenant
from agent_runtime.tenancy.auth import (
    INVALID_KEY_MESSAGE,
    MISSING_KEY_MESSAGE,
    Authenticator,
    extract_api_key,
    generate_key,
    parse_key,
    verify_key,
)

TTL_S = 2.0


class CountingStore:
    """An in-memory KeyStore that counts how often the authenticator reads it."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKeyRecord] = {}
        self.tenants: dict[str, Tenant] = {}
        self.key_reads = 0
        self.tenant_reads = 0

    def add_tenant(self, tenant_id: str, disabled: bool = False) -> None:
        self.tenants[tenant_id] = Tenant(
            tenant_id=tenant_id, name=tenant_id, disabled=disabled, created_at=datetime.now(UTC)
        )

    def add_key(self, tenant_id: str) -> tuple[str, ApiKeyRecord]:
        raw, record = generate_key(tenant_id, name="test")
        self.keys[record.key_id] = record
        return raw, record

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        self.key_reads += 1
        return self.keys.get(key_id)

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        self.tenant_reads += 1
        return self.tenants.get(tenant_id)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> CountingStore:
    store = CountingStore()
    store.add_tenant("acme")
    return store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def authenticator(store: CountingStore, clock: FakeClock) -> Authenticator:
    return Authenticator(store, cache_ttl_s=TTL_S, clock=clock)


async def reject(authenticator: Authenticator, raw: str | None, message: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        await authenticator.authenticate(raw)
    assert caught.value.message == message
    if raw:
        assert raw not in str(caught.value)
        assert raw not in repr(caught.value.details)


def test_generate_parse_verify_round_trip() -> None:
    before = datetime.now(UTC)
    raw, record = generate_key("acme", name="ci")
    assert re.fullmatch(r"ar_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", raw)
    assert parse_key(raw) == record.key_id
    assert raw.startswith(f"ar_{record.key_id}_")
    assert record.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in record.model_dump_json()
    assert verify_key(raw, record)
    assert (record.tenant_id, record.name, record.revoked) == ("acme", "ci", False)
    assert record.created_at.tzinfo is not None
    assert before <= record.created_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_generated_keys_are_distinct() -> None:
    keys = [generate_key("acme") for _ in range(50)]
    assert len({raw for raw, _ in keys}) == 50
    assert len({record.key_id for _, record in keys}) == 50


def test_wrong_secret_does_not_verify() -> None:
    raw, record = generate_key("acme")
    other_raw, _ = generate_key("acme")
    forged = f"ar_{record.key_id}_{other_raw.split('_', 2)[2]}"
    assert parse_key(forged) == record.key_id
    assert not verify_key(forged, record)
    assert verify_key(raw, record)


MALFORMED = [
    "not-a-key",
    "ar_",
    "ar_0123456789ab",
    "ar_0123456789ab_",
    "xx_0123456789ab_" + "a" * 43,
    "ar_0123456789AB_" + "a" * 43,  # key id is lowercase hex
    "ar_0123456789a_" + "a" * 44,  # key id too short
    "ar_0123456789ab_" + "a" * 42,  # secret too short
    "ar_0123456789ab_" + "a" * 44,  # secret too long
    "ar_0123456789ab_" + "a" * 42 + "+",  # not URL-safe base64
    " ar_0123456789ab_" + "a" * 43,
    "ar_0123456789ab_" + "a" * 2000,
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_parse_rejects_malformed_keys(raw: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        parse_key(raw)
    assert caught.value.message == INVALID_KEY_MESSAGE


@pytest.mark.parametrize("raw", MALFORMED)
async def test_malformed_key_is_rejected_without_store_read(
    authenticator: Authenticator, store: CountingStore, raw: str
) -> None:
    await reject(authenticator, raw, INVALID_KEY_MESSAGE)
    assert store.key_reads == 0


async def test_valid_key_authenticates(authenticator: Authenticator, store: CountingStore) -> None:
    raw, record = store.add_key("acme")
    principal = await authenticator.authenticate(raw)
    assert (principal.tenant_id, principal.key_id) == ("acme", record.key_id)


@pytest.mark.parametrize("raw", [None, ""])
async def test_missing_key_message(authenticator: Authenticator, raw: str | None) -> None:
    await reject(authenticator, raw, MISSING_KEY_MESSAGE)
    assert "x-api-key" in MISSING_KEY_MESSAGE and "Bearer" in MISSING_KEY_MESSAGE


async def test_wrong_secret_rejected(authenticator: Authenticator, store: CountingStore) -> None:
    _, record = store.add_key("acme")
    other_raw, _ = generate_key("acme")
    forged = f"ar_{record.key_id}_{other_raw.split('_', 2)[2]}"
    await reject(authenticator, forged, INVALID_KEY_MESSAGE)


async def test_unknown_key_rejected(authenticator: Authenticator) -> None:
    raw, _ = generate_key("acme")
    await reject(authenticator, raw, INVALID_KEY_MESSAGE)


async def test_revoked_key_rejected(authenticator: Authenticator, store: CountingStore) -> None:
    raw, record = store.add_key("acme")
    store.keys[record.key_id] = record.model_copy(update={"revoked": True})
    await reject(authenticator, raw, INVALID_KEY_MESSAGE)


async def test_disabled_tenant_rejected(authenticator: Authenticator, store: CountingStore) -> None:
    store.add_tenant("frozen", disabled=True)
    raw, _ = store.add_key("frozen")
    await reject(authenticator, raw, INVALID_KEY_MESSAGE)


async def test_key_of_missing_tenant_rejected(
    authenticator: Authenticator, store: CountingStore
) -> None:
    raw, _ = store.add_key("no-such-tenant")
    await reject(authenticator, raw, INVALID_KEY_MESSAGE)


async def test_cache_hit_avoids_store_reads(
    authenticator: Authenticator, store: CountingStore, clock: FakeClock
) -> None:
    raw, _ = store.add_key("acme")
    for _ in range(5):
        await authenticator.authenticate(raw)
        clock.now += TTL_S / 10
    assert (store.key_reads, store.tenant_reads) == (1, 1)


async def test_cached_record_still_checks_the_secret(
    authenticator: Authenticator, store: CountingStore
) -> None:
    raw, record = store.add_key("acme")
    await authenticator.authenticate(raw)
    other_raw, _ = generate_key("acme")
    forged = f"ar_{record.key_id}_{other_raw.split('_', 2)[2]}"
    await reject(authenticator, forged, INVALID_KEY_MESSAGE)
    assert store.key_reads == 1


async def test_cache_expires(
    authenticator: Authenticator, store: CountingStore, clock: FakeClock
) -> None:
    raw, record = store.add_key("acme")
    await authenticator.authenticate(raw)
    store.keys[record.key_id] = record.model_copy(update={"revoked": True})
    clock.now += TTL_S - 0.01
    await authenticator.authenticate(raw)  # still cached: the revocation is not seen yet
    assert store.key_reads == 1
    clock.now += 0.02
    await reject(authenticator, raw, INVALID_KEY_MESSAGE)
    assert store.key_reads == 2


async def test_unknown_key_is_cached_too(
    authenticator: Authenticator, store: CountingStore, clock: FakeClock
) -> None:
    raw, record = generate_key("acme")
    await reject(authenticator, raw, INVALID_KEY_MESSAGE)
    store.keys[record.key_id] = record
    await reject(authenticator, raw, INVALID_KEY_MESSAGE)
    assert (store.key_reads, store.tenant_reads) == (1, 0)
    clock.now += TTL_S + 0.01
    principal = await authenticator.authenticate(raw)
    assert principal.key_id == record.key_id
    assert store.key_reads == 2


async def test_invalidate_drops_the_entry(
    authenticator: Authenticator, store: CountingStore
) -> None:
    raw, record = store.add_key("acme")
    await authenticator.authenticate(raw)
    store.keys[record.key_id] = record.model_copy(update={"revoked": True})
    authenticator.invalidate(record.key_id)
    await reject(authenticator, raw, INVALID_KEY_MESSAGE)
    assert store.key_reads == 2


async def test_invalidate_drops_a_negative_entry(
    authenticator: Authenticator, store: CountingStore
) -> None:
    raw, record = generate_key("acme")
    await reject(authenticator, raw, INVALID_KEY_MESSAGE)
    store.keys[record.key_id] = record
    authenticator.invalidate(record.key_id)
    assert (await authenticator.authenticate(raw)).tenant_id == "acme"


async def test_zero_ttl_disables_the_cache(store: CountingStore, clock: FakeClock) -> None:
    authenticator = Authenticator(store, cache_ttl_s=0, clock=clock)
    raw, _ = store.add_key("acme")
    for _ in range(3):
        await authenticator.authenticate(raw)
    assert store.key_reads == 3


async def test_cache_is_bounded_lru(store: CountingStore, clock: FakeClock) -> None:
    authenticator = Authenticator(store, cache_ttl_s=TTL_S, clock=clock, max_cache_entries=2)
    first, second, third = (store.add_key("acme")[0] for _ in range(3))
    await authenticator.authenticate(first)
    await authenticator.authenticate(second)
    await authenticator.authenticate(first)  # first is now the most recently used
    await authenticator.authenticate(third)  # evicts second
    assert store.key_reads == 3
    await authenticator.authenticate(first)
    assert store.key_reads == 3
    await authenticator.authenticate(second)
    assert store.key_reads == 4


async def test_unknown_key_flood_does_not_evict_valid_keys(
    store: CountingStore, clock: FakeClock
) -> None:
    authenticator = Authenticator(store, cache_ttl_s=TTL_S, clock=clock, max_cache_entries=4)
    raw, _ = store.add_key("acme")
    await authenticator.authenticate(raw)
    for _ in range(20):
        await reject(authenticator, generate_key("acme")[0], INVALID_KEY_MESSAGE)
    reads = store.key_reads
    await authenticator.authenticate(raw)
    assert store.key_reads == reads


def test_extract_from_x_api_key() -> None:
    assert extract_api_key({"x-api-key": "ar_k"}) == "ar_k"
    assert extract_api_key({"X-API-Key": " ar_k "}) == "ar_k"
    assert extract_api_key(Headers({"X-Api-Key": "ar_k"})) == "ar_k"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_extract_from_bearer(scheme: str) -> None:
    assert extract_api_key({"authorization": f"{scheme} ar_k"}) == "ar_k"
    assert extract_api_key(Headers({"Authorization": f"{scheme} ar_k"})) == "ar_k"


def test_extract_prefers_x_api_key() -> None:
    headers = {"x-api-key": "ar_header", "authorization": "Bearer ar_bearer"}
    assert extract_api_key(headers) == "ar_header"
    assert extract_api_key({"x-api-key": "", "authorization": "Bearer ar_bearer"}) == "ar_bearer"


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Basic dXNlcjpwYXNz"}, {"authorization": "Bearer "}, {"x-api-key": " "}],
)
def test_extract_returns_none_without_a_key(headers: dict[str, str]) -> None:
    assert extract_api_key(headers) is None
