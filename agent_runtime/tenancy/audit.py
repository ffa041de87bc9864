"""The audit log (``agent_audit``, revision 0004): admin actions and every ended run.

One row per event: when, the tenant it is about, the acting key (none for the CLI or the
bootstrap admin key), how the actor proved itself, the action, its target and JSON
details. Admin actions come from :class:`agent_runtime.tenancy.tenants.TenantAdmin` (the admin API
and the CLI); runs from :meth:`agent_runtime.runs.run_service.RunService.after_run`, which every
ended
run passes through (graph, run and thread ids, status, tokens in and out, cost when known).

Actions: ``tenant.create``, ``tenant.disable``, ``tenant.enable``, ``key.create``,
``key.rotate``, ``key.revoke``, ``limits.set``, ``budget.set``, ``budget.delete``,
``run.end``. Secrets never go in: no raw key, no hash (:func:`_check_details`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import insert, select

from agent_runtime.core.records import RunRecord
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import AUDIT, utcnow

ActorKind = Literal["cli", "admin-api-key", "api-key"]
# Detail names that could only hold a secret: refused outright.
_SECRET_NAMES = frozenset({"key", "raw_key", "key_hash", "hash", "secret", "password", "token"})
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: the CLI (on the database's host), the bootstrap ``AGENT_ADMIN_API_KEY``,
    or an API key (its id and tenant)."""

    kind: ActorKind
    key_id: str | None = None
    tenant_id: str | None = None


CLI = Actor("cli")


class AuditEntry(BaseModel):
    audit_id: str
    created_at: datetime
    tenant_id: str | None = None
    key_id: str | None = None
    actor: str
    action: str
    target: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


def _check_details(details: dict[str, Any]) -> None:
    secret = _SECRET_NAMES & {name.lower() for name in details}
    if secret:
        raise ValueError(f"audit details must not carry secrets ({sorted(secret)[0]!r})")


class AuditLog:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    async def record(
        self,
        action: str,
        actor: Actor,
        *,
        tenant_id: str | None,
        target: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        details = dict(details or {})
        _check_details(details)
        entry = AuditEntry(
            audit_id=str(uuid.uuid4()),
            created_at=utcnow(),
            tenant_id=tenant_id,
            key_id=actor.key_id,
            actor=actor.kind,
            action=action,
            target=target,
            details=details,
        )
        async with self._store.transaction() as conn:
            await conn.execute(insert(AUDIT).values(**entry.model_dump()))
        return entry

    async def search(
        self,
        *,
        tenant_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Newest first. ``action`` is exact, or a prefix when it ends in ``.`` (``key.``)."""
        query = select(AUDIT)
        if tenant_id is not None:
            query = query.where(AUDIT.c.tenant_id == tenant_id)
        if action is not None:
            if action.endswith("."):
                query = query.where(AUDIT.c.action.startswith(action, autoescape=True))
            else:
                query = query.where(AUDIT.c.action == action)
        if since is not None:
            since = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
            query = query.where(AUDIT.c.created_at >= since)
        query = (
            query.order_by(AUDIT.c.created_at.desc(), AUDIT.c.audit_id.desc())
            .limit(max(1, min(limit, MAX_PAGE)))
            .offset(max(0, offset))
        )
        async with self._store.transaction() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [AuditEntry.model_validate(dict(row)) for row in rows]


def run_end_details(
    run: RunRecord,
    status: str | None,
    input_tokens: int,
    output_tokens: int,
    cost_usd: float | None = None,
) -> dict[str, Any]:
    """What ``run.end`` records; ``status`` None is a rolled-back run."""
    return {
        "graph_id": run.graph_id,
        "assistant_id": run.assistant_id,
        "run_id": run.run_id,
        "thread_id": run.thread_id,
        "stateless": run.temporary,
        "status": status or "rolled_back",
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_usd": cost_usd,  # summed from the usage ledger's rows of the run
        "attempt": run.attempt,
    }


async def record_run_end(
    store: MetadataStore,
    run: RunRecord,
    status: str | None,
    input_tokens: int,
    output_tokens: int,
    cost_usd: float | None = None,
) -> AuditEntry:
    """The ``run.end`` entry; the run's key is in its kwargs
    (:mod:`agent_runtime.runs.run_service`)."""
    key_id = run.kwargs.get("key_id")
    actor = Actor("api-key", key_id=key_id if isinstance(key_id, str) else None)
    return await AuditLog(store).record(
        "run.end",
        actor,
        tenant_id=run.tenant_id,
        target=run.run_id,
        details=run_end_details(run, status, input_tokens, output_tokens, cost_usd),
    )
