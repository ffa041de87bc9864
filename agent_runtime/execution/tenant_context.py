"""The tenant whose data graph code touches: one ``ContextVar`` for the store and the
checkpoints.

Graphs are compiled once per replica, so neither their item store
(:class:`agent_runtime.execution.item_store.ContextualStore`) nor their checkpointer
(:class:`agent_runtime.execution.tenant_checkpoints.TenantScopedSaver`) can hold a
tenant. The runtime opens :func:`tenant_scope` around each run and each thread operation;
LangGraph runs nodes and checkpoint writes in tasks that copy the caller's context, so
every call a run makes sees it. Outside a scope both refuse to work
(:class:`NoTenantScope`) rather than touch data of no tenant or of another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

current_tenant: ContextVar[str | None] = ContextVar("agent_runtime_tenant", default=None)
"""The tenant of the run or thread operation in progress (see :func:`tenant_scope`)."""


class NoTenantScope(RuntimeError):
    """The store or the checkpointer was used outside :func:`tenant_scope`: a runtime bug."""


@contextmanager
def tenant_scope(tenant_id: str) -> Iterator[None]:
    """Run the block (and every task it starts) with ``tenant_id``'s store and checkpoints."""
    if not tenant_id:
        raise ValueError("tenant_scope needs a non-empty tenant id")
    token = current_tenant.set(tenant_id)
    try:
        yield
    finally:
        current_tenant.reset(token)


def require_tenant(what: str) -> str:
    """The current scope's tenant; :class:`NoTenantScope` outside one."""
    tenant_id = current_tenant.get()
    if not tenant_id:
        raise NoTenantScope(
            f"the {what} was used outside tenant_scope(); wrap each run or thread operation "
            "in agent_runtime.execution.tenant_context.tenant_scope(tenant_id)"
        )
    return tenant_id
