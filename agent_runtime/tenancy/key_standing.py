"""Whether what a key started may go on: the key is not revoked and its tenant not disabled.

A request is authenticated once, when it arrives; what it leaves behind acts later: a run
queued or delayed behind others starts when its turn comes, a stream stays open for as
long as its client likes. :func:`refusals` says, for many of them in two queries, which may
no longer act and why (the reason is written for the client: it names no secret).

A :class:`Holder` names the tenant and the key that started something. With ``key_hash``
(the SHA-256 of the key that was presented, as stored) the key must still exist and hash
the same: a rotated key stops what its old secret opened. Without it (a run: its key may be
a cron's placeholder, with no row), only a key row that says ``revoked`` refuses.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select

from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import API_KEYS, TENANTS

KEY_REVOKED = "the API key that started it was revoked"
KEY_ROTATED = "the API key that started it was rotated"
KEY_GONE = "the API key that started it no longer exists"
TENANT_DISABLED = "its tenant is disabled"
TENANT_GONE = "its tenant no longer exists"


@dataclass(frozen=True, slots=True)
class Holder:
    tenant_id: str
    key_id: str | None
    key_hash: str | None = None


async def refusals(store: MetadataStore, holders: Collection[Holder]) -> dict[Holder, str]:
    """The holders that may no longer act, each with the reason (see the module)."""
    if not holders:
        return {}
    tenant_ids = {h.tenant_id for h in holders}
    key_ids = {h.key_id for h in holders if h.key_id}
    async with store.transaction() as conn:
        tenants = dict(
            (
                await conn.execute(
                    select(TENANTS.c.tenant_id, TENANTS.c.disabled).where(
                        TENANTS.c.tenant_id.in_(tenant_ids)
                    )
                )
            ).all()
        )
        keys: dict[str, _Key] = {
            row.key_id: _Key(row.revoked, row.key_hash)
            for row in await conn.execute(
                select(API_KEYS.c.key_id, API_KEYS.c.revoked, API_KEYS.c.key_hash).where(
                    API_KEYS.c.key_id.in_(key_ids)
                )
            )
        }
    refused: dict[Holder, str] = {}
    for holder in holders:
        reason = _reason(holder, tenants.get(holder.tenant_id), keys.get(holder.key_id or ""))
        if reason is not None:
            refused[holder] = reason
    return refused


@dataclass(frozen=True, slots=True)
class _Key:
    revoked: bool
    key_hash: str


def _reason(holder: Holder, disabled: bool | None, key: _Key | None) -> str | None:
    """``disabled``: the tenant's flag (None: no such tenant); ``key``: its row or None."""
    if disabled is None:
        return TENANT_GONE
    if disabled:
        return TENANT_DISABLED
    if key is not None and key.revoked:
        return KEY_REVOKED
    if holder.key_hash is None:
        return None
    if key is None:
        return KEY_GONE
    if not hmac.compare_digest(holder.key_hash, key.key_hash):
        return KEY_ROTATED
    return None
