"""Checkpoints filed per tenant: each tenant's thread ids are its own, in checkpoints too.

Thread ids are per tenant (two tenants may each have a thread ``T``), but LangGraph's
checkpoint tables are keyed by thread id alone. :class:`TenantScopedSaver` sits between
the graphs and the saver: on the way in it replaces the thread id of every config with
:func:`checkpoint_thread_id` (the tenant of the current
:func:`~agent_runtime.execution.tenant_context.tenant_scope`, then the id), and on the
way out it puts the caller's id back into every config it returns. Graph code, the
thread service and clients see the thread id they gave (LangGraph's semantics and the
API's answers are unchanged); only the checkpoint tables see the tenant. Outside a
tenant scope every call raises rather than falling back to an unscoped key.

The raw SQL of :mod:`agent_runtime.execution.checkpoint_ops` derives the same keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)

from agent_runtime.execution.tenant_context import require_tenant

_SEPARATOR = ":"


def checkpoint_thread_id(tenant_id: str, thread_id: str) -> str:
    """The thread id ``tenant_id``'s thread ``thread_id`` has in the checkpoint tables.

    ``<tenant>:<thread>``, with ``%`` and ``:`` of the tenant id escaped, so the first
    ``:`` always ends the tenant: two different (tenant, thread) pairs never share a key.
    Ids of checkpoints written before tenants were part of the key have no ``:`` (the
    API's thread ids are UUIDs), so no scoped key is ever one of them.
    """
    if not tenant_id:
        raise ValueError("a checkpoint key needs a tenant id")
    escaped = tenant_id.replace("%", "%25").replace(_SEPARATOR, "%3A")
    return f"{escaped}{_SEPARATOR}{thread_id}"


class TenantScopedSaver(BaseCheckpointSaver[Any]):
    """``inner``, with every thread id scoped to the current tenant (see the module)."""

    def __init__(self, inner: BaseCheckpointSaver[Any]) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.serde = inner.serde

    @property
    def config_specs(self) -> list[Any]:
        return list(self.inner.config_specs)

    # -- keys -----------------------------------------------------------------------------
    @staticmethod
    def _prefix() -> str:
        return checkpoint_thread_id(require_tenant("checkpointer"), "")

    def _key(self, thread_id: str) -> str:
        return self._prefix() + str(thread_id)

    def _in(self, config: RunnableConfig) -> RunnableConfig:
        configurable = dict(config.get("configurable") or {})
        if configurable.get("thread_id") is None:
            raise ValueError("a checkpoint call needs configurable.thread_id")
        configurable["thread_id"] = self._key(str(configurable["thread_id"]))
        return {**config, "configurable": configurable}

    def _in_optional(self, config: RunnableConfig | None) -> RunnableConfig | None:
        if config is None or (config.get("configurable") or {}).get("thread_id") is None:
            return config
        return self._in(config)

    @staticmethod
    def _out(config: RunnableConfig, prefix: str) -> RunnableConfig:
        configurable = dict(config.get("configurable") or {})
        key = configurable.get("thread_id")
        if key is not None:
            if not str(key).startswith(prefix):
                # Only the tenant's own keys ever go in; anything else is a bug to stop.
                raise RuntimeError("a checkpoint of another tenant reached the saver's caller")
            configurable["thread_id"] = str(key)[len(prefix) :]
        return {**config, "configurable": configurable}

    def _tuple_out(self, found: CheckpointTuple, prefix: str) -> CheckpointTuple:
        parent = found.parent_config
        return found._replace(
            config=self._out(found.config, prefix),
            parent_config=None if parent is None else self._out(parent, prefix),
        )

    # -- async ----------------------------------------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        prefix = self._prefix()
        found = await self.inner.aget_tuple(self._in(config))
        return None if found is None else self._tuple_out(found, prefix)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        if config is None:
            raise ValueError("checkpoints are listed one thread at a time")
        prefix = self._prefix()
        inner = self.inner.alist(
            self._in(config), filter=filter, before=self._in_optional(before), limit=limit
        )
        async for found in inner:
            yield self._tuple_out(found, prefix)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        prefix = self._prefix()
        stored = await self.inner.aput(self._in(config), checkpoint, metadata, new_versions)
        return self._out(stored, prefix)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self.inner.aput_writes(self._in(config), writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.inner.adelete_thread(self._key(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        # Run ids are the runtime's own UUIDs, never shared between tenants.
        await self.inner.adelete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.inner.acopy_thread(self._key(source_thread_id), self._key(target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self.inner.aprune([self._key(t) for t in thread_ids], strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self.inner.aget_delta_channel_history(
            config=self._in(config), channels=channels
        )

    # -- sync -----------------------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        prefix = self._prefix()
        found = self.inner.get_tuple(self._in(config))
        return None if found is None else self._tuple_out(found, prefix)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        if config is None:
            raise ValueError("checkpoints are listed one thread at a time")
        prefix = self._prefix()
        inner = self.inner.list(
            self._in(config), filter=filter, before=self._in_optional(before), limit=limit
        )
        return (self._tuple_out(found, prefix) for found in inner)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        prefix = self._prefix()
        stored = self.inner.put(self._in(config), checkpoint, metadata, new_versions)
        return self._out(stored, prefix)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.inner.put_writes(self._in(config), writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self.inner.delete_thread(self._key(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.inner.delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.inner.copy_thread(self._key(source_thread_id), self._key(target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.inner.prune([self._key(t) for t in thread_ids], strategy=strategy)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self.inner.get_delta_channel_history(config=self._in(config), channels=channels)

    # -- the rest -------------------------------------------------------------------------
    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.inner.get_next_version(current, channel)

    def with_allowlist(self, extra_allowlist: Any) -> BaseCheckpointSaver[Any]:
        """Graph compilation narrows the serde allowlist: apply it to the inner saver."""
        inner = self.inner.with_allowlist(extra_allowlist)
        return self if inner is self.inner else TenantScopedSaver(inner)
