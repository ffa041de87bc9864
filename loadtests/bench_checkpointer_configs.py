"""``make bench-checkpointer``'s configurations: the workload graph, and the four
checkpointers it is compiled with (none, ``InMemorySaver``, the stock ``AsyncPostgresSaver``,
the production ``Checkpointers``), each Postgres one in a schema of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from agent_runtime.config.settings import StorageSettings
from agent_runtime.execution.checkpointers import Checkpointers

POOL_MIN_SIZE = 4  # as agent_runtime.execution.checkpointers builds its pool
# The kwargs the saver needs (autocommit, dict rows), as the production pool has them.
POOL_KWARGS: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}

CONFIGS: dict[str, str] = {
    "none": "no checkpointer",
    "memory": "InMemorySaver",
    "postgres_stock": "AsyncPostgresSaver (stock, one lock)",
    "postgres_ours": "Checkpointers (lock-free, timed)",
}
BASELINE, OURS, STOCK = "none", "postgres_ours", "postgres_stock"


# -- the workload -------------------------------------------------------------------------


class ThreadState(TypedDict, total=False):
    messages: Annotated[list[str], operator.add]
    route: str


def build_graph(
    model_ms: float, checkpointer: BaseCheckpointSaver[Any] | None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Router -> code | general, each node one fake model call of ``model_ms``."""
    delay = model_ms / 1000

    async def router(state: ThreadState) -> ThreadState:
        await asyncio.sleep(delay)
        question = state["messages"][-1]
        return {"route": "code" if int(question.rsplit(" ", 1)[-1]) % 2 else "general"}

    async def code(state: ThreadState) -> ThreadState:
        await asyncio.sleep(delay)
        return {"messages": [f"code answer to {state['messages'][-1]}"]}

    async def general(state: ThreadState) -> ThreadState:
        await asyncio.sleep(delay)
        return {"messages": [f"general answer to {state['messages'][-1]}"]}

    builder = StateGraph(ThreadState)
    builder.add_node("router", router)
    builder.add_node("code", code)
    builder.add_node("general", general)
    builder.add_edge(START, "router")
    builder.add_conditional_edges("router", lambda state: state["route"], ["code", "general"])
    builder.add_edge("code", END)
    builder.add_edge("general", END)
    return builder.compile(checkpointer=checkpointer)


# -- the configurations -------------------------------------------------------------------


def with_search_path(url: str, schema: str) -> str:
    """``url`` with libpq ``options`` that put ``schema`` first on the search path."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    existing = dict(parse_qsl(parts.query)).get("options")
    options = f"-c search_path={schema}" + (f" {existing}" if existing else "")
    query.append(("options", options))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@contextlib.asynccontextmanager
async def fresh_schema(url: str, prefix: str) -> AsyncIterator[str]:
    """Create an empty schema; yield a URL whose tables land in it; drop it afterwards."""
    schema = f"{prefix}{secrets.token_hex(4)}"
    async with await AsyncConnection.connect(url, autocommit=True, connect_timeout=10) as admin:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield with_search_path(url, schema)
        finally:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@contextlib.asynccontextmanager
async def open_saver(
    name: str, url: str, schema_prefix: str
) -> AsyncIterator[BaseCheckpointSaver[Any] | None]:
    """Configuration ``name``'s checkpointer; a Postgres one gets a schema of its own."""
    if name == BASELINE:
        yield None
        return
    if name == "memory":
        yield InMemorySaver()
        return
    async with fresh_schema(url, schema_prefix) as dsn:
        settings = StorageSettings(database_url=dsn)
        if name == OURS:
            factory = Checkpointers(settings)
            try:
                yield await factory.setup()
            finally:
                await factory.close()
            return
        pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            settings.postgres_dsn,
            min_size=POOL_MIN_SIZE,
            max_size=max(POOL_MIN_SIZE, settings.db_pool_size),
            kwargs=POOL_KWARGS,
            timeout=settings.db_timeout_s,
            open=False,
        )
        await pool.open(wait=True, timeout=settings.db_timeout_s)
        try:
            saver = AsyncPostgresSaver(pool)
            await saver.setup()
            yield saver
        finally:
            await pool.close()
