"""Where the store index's vectors live: a table of the runtime's own beside LangGraph's.

Neither LangGraph's vector tables can be used here: its Postgres index needs the pgvector
extension and its SQLite index the sqlite-vec extension, which this runtime cannot count
on. So each item's vectors are rows of ``agent_store_vectors`` in the store's own database:
``(prefix, key, field)`` (``prefix`` the namespace as LangGraph's ``store`` table writes
it, labels joined with ``.``), the ``embedder`` that made them, and the vector as
little-endian float32 bytes (``bytea``/``BLOB``: read straight into numpy; ``real[]``
took 5 to 9 times longer to read 100,000 vectors of 256 numbers). A foreign key with
``ON DELETE CASCADE`` on ``store (prefix, key)`` removes them with their item, whether a
delete, a replacing put or the TTL sweeper removes it.

The table is created by the item store's set-up (``ItemStores.setup``), after LangGraph's
``store`` table it refers to, under the same cross-process lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import aiosqlite
import numpy as np
from psycopg import AsyncConnection
from psycopg.errors import ForeignKeyViolation
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from agent_runtime.execution.store_index import Vectors

logger = logging.getLogger(__name__)

TABLE = "agent_store_vectors"
_COLUMNS = "prefix, key, field, embedder, embedding"
_CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    prefix TEXT NOT NULL,
    key TEXT NOT NULL,
    field TEXT NOT NULL,
    embedder TEXT NOT NULL,
    embedding {{blob}} NOT NULL,
    PRIMARY KEY (prefix, key, field),
    FOREIGN KEY (prefix, key) REFERENCES store (prefix, key) ON DELETE CASCADE
)"""


@dataclass(frozen=True)
class ItemVectors:
    """An item's vectors (one row of ``vectors`` per field); none: it has no vectors now."""

    prefix: str
    key: str
    fields: tuple[str, ...]
    vectors: Vectors


@dataclass(frozen=True)
class StoredVectors:
    """Vectors read back: row ``i`` of ``matrix`` belongs to item ``keys[i]``."""

    keys: list[tuple[str, str]]  # (prefix, key)
    matrix: Vectors

    @classmethod
    def of(cls, rows: Sequence[tuple[str, str, bytes]], dims: int) -> StoredVectors:
        """Rows of ``dims`` float32 numbers; others (a corrupt row) are left out."""
        size = dims * 4
        kept = [row for row in rows if len(row[2]) == size]
        blob = b"".join(row[2] for row in kept)
        matrix = np.frombuffer(blob, dtype="<f4").astype(np.float32, copy=False)
        return cls([(row[0], row[1]) for row in kept], matrix.reshape(len(kept), dims))


class VectorRows(Protocol):
    async def setup(self) -> None: ...

    async def replace(self, items: Sequence[ItemVectors], embedder: str) -> None:
        """Each item's vectors become exactly those given (an item gone is skipped)."""
        ...

    async def under(self, prefix: str | None, embedder: str, dims: int) -> StoredVectors:
        """Every vector ``embedder`` made for items in ``prefix`` or below it (None: all)."""
        ...


def _encode(vector: Vectors) -> bytes:
    return vector.astype("<f4").tobytes()


class PostgresVectors:
    """The vectors table over the item store's psycopg pool."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[DictRow]]) -> None:
        self._pool = pool

    async def setup(self) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(_CREATE.format(blob="BYTEA"))
            # Searches match prefixes with LIKE; text_pattern_ops serves it in any locale.
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {TABLE}_prefix_idx ON {TABLE} "
                "(prefix text_pattern_ops)"
            )

    async def replace(self, items: Sequence[ItemVectors], embedder: str) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            for item in items:
                try:
                    async with conn.transaction():  # a savepoint: one item gone spoils none
                        await conn.execute(
                            f"DELETE FROM {TABLE} WHERE prefix = %s AND key = %s",
                            (item.prefix, item.key),
                        )
                        async with conn.cursor() as cursor:
                            await cursor.executemany(
                                f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
                                [
                                    (item.prefix, item.key, field, embedder, _encode(vector))
                                    for field, vector in zip(item.fields, item.vectors, strict=True)
                                ],
                            )
                except ForeignKeyViolation:
                    logger.debug("store item %s/%s deleted while indexed", item.prefix, item.key)

    async def under(self, prefix: str | None, embedder: str, dims: int) -> StoredVectors:
        query = f"SELECT prefix, key, embedding FROM {TABLE} WHERE embedder = %s"
        params: tuple[str, ...] = (embedder,)
        if prefix is not None:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query += " AND (prefix = %s OR prefix LIKE %s ESCAPE '\\')"
            params += (prefix, f"{escaped}.%")
        async with self._pool.connection() as conn, conn.cursor(binary=True) as cursor:
            await cursor.execute(query, params)
            rows = await cursor.fetchall()
        return StoredVectors.of([(r["prefix"], r["key"], r["embedding"]) for r in rows], dims)


class SqliteVectors:
    """The vectors table on the item store's SQLite connection, taking turns with the store
    on its lock (one connection: statements of both would otherwise interleave)."""

    def __init__(self, conn: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self._conn = conn
        self._lock = lock

    async def setup(self) -> None:
        async with self._lock:
            await self._conn.execute(_CREATE.format(blob="BLOB"))

    async def replace(self, items: Sequence[ItemVectors], embedder: str) -> None:
        rows = [
            (item.prefix, item.key, field, embedder, _encode(vector), item.prefix, item.key)
            for item in items
            for field, vector in zip(item.fields, item.vectors, strict=True)
        ]
        async with self._lock:
            await self._conn.execute("BEGIN")
            try:
                await self._conn.executemany(
                    f"DELETE FROM {TABLE} WHERE prefix = ? AND key = ?",
                    [(item.prefix, item.key) for item in items],
                )
                # Only for items still there: the foreign key would refuse the others.
                await self._conn.executemany(
                    f"INSERT INTO {TABLE} ({_COLUMNS}) SELECT ?, ?, ?, ?, ? "
                    "WHERE EXISTS (SELECT 1 FROM store WHERE prefix = ? AND key = ?)",
                    rows,
                )
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def under(self, prefix: str | None, embedder: str, dims: int) -> StoredVectors:
        query = f"SELECT prefix, key, embedding FROM {TABLE} WHERE embedder = ?"
        params: tuple[str, ...] = (embedder,)
        if prefix is not None:
            # Byte order (SQLite's BINARY collation): "a." <= "a.<anything>" < "a/".
            query += " AND (prefix = ? OR (prefix >= ? AND prefix < ?))"
            params += (prefix, f"{prefix}.", f"{prefix}/")
        async with self._lock:
            cursor = await self._conn.execute(query, params)
            rows = await cursor.fetchall()
            await cursor.close()
        return StoredVectors.of([(str(r[0]), str(r[1]), bytes(r[2])) for r in rows], dims)
