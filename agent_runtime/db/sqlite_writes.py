"""SQLite's one writer: the writes of an engine queue for it instead of failing.

A SQLite file has one writer at a time. Left to itself, every pooled connection that
wants to write waits in SQLite's busy handler, which sleeps between tries (up to 100 ms
each, the lock sitting free meanwhile) and gives up after the busy timeout: a burst of
writes fails ("database is locked", or a pool that stays empty) where it should merely
wait (issue 13, defect 12).

:class:`SqliteWrites` is the write queue of one engine, that is of one process's
metadata store. A transaction takes its turn (an ``asyncio.Lock``, first come first
served) before its first write statement, or up front when it asks for ``BEGIN
IMMEDIATE``, and gives it back once it has committed or rolled back; reads before the
first write, and read-only transactions, take no turn (WAL lets them run beside the
writer). The transaction at the head of the queue then opens its write transaction
(``BEGIN IMMEDIATE``), trying again every few milliseconds while another process writes.
Both waits end at ``AGENT_SQLITE_WRITE_TIMEOUT_S``, with :class:`TimeoutError` (the store
answers it as "database unavailable").
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# The statements before which pysqlite opens a transaction (it begins lazily): the
# first of them in a transaction is where it needs the file's write lock.
_WRITE_STATEMENT = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
# Where a transaction's ticket waits for the engine's event listener to find it.
_TICKET = "agent_runtime.sqlite_write_ticket"
# How often the head of the queue tries the file's lock while another process holds it:
# short, so the lock never sits free for long; one connection per process tries.
_RETRY_S = 0.002


class SqliteWrites:
    """The write queue of one SQLite engine (see the module's docstring)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock = asyncio.Lock()

    def listen(self, engine: AsyncEngine) -> None:
        """Make a transaction's first write statement wait for its turn."""

        def before_write(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
            ticket = conn.info.get(_TICKET)
            if not isinstance(ticket, _Ticket) or ticket.held:
                return
            if not _WRITE_STATEMENT.match(statement):
                return
            dbapi_connection = conn.connection.dbapi_connection
            assert dbapi_connection is not None
            # Event handlers run in SQLAlchemy's greenlet: run_async awaits from here.
            dbapi_connection.run_async(ticket.take)

        event.listen(engine.sync_engine, "before_cursor_execute", before_write)

    @asynccontextmanager
    async def turn(self, conn: AsyncConnection, *, begin_immediate: bool) -> AsyncIterator[None]:
        """Around a transaction on ``conn``: its turn is taken at its first write (at once
        with ``begin_immediate``) and given back when the block ends, after the commit."""
        ticket = _Ticket(self)
        info = conn.info
        info[_TICKET] = ticket
        try:
            if begin_immediate:
                raw = await conn.get_raw_connection()
                await ticket.take(raw.driver_connection)
            yield
        finally:
            info.pop(_TICKET, None)
            ticket.give_back()

    async def _acquire(self) -> None:
        async with asyncio.timeout(self.timeout_s):
            await self._lock.acquire()

    def _release(self) -> None:
        self._lock.release()


class _Ticket:
    """One transaction's place in the queue: taken at most once, given back at its end."""

    def __init__(self, writes: SqliteWrites) -> None:
        self._writes = writes
        self.held = False

    async def take(self, driver: Any) -> None:
        """Wait for the turn, then open the write transaction on ``driver`` (the aiosqlite
        connection), waiting for other processes' writers."""
        if self.held:
            return
        deadline = time.monotonic() + self._writes.timeout_s
        await self._writes._acquire()
        self.held = True
        if not driver.in_transaction:
            await _begin_immediate(driver, deadline, busy_ms=int(self._writes.timeout_s * 1000))

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self._writes._release()


async def _begin_immediate(driver: Any, deadline: float, *, busy_ms: int) -> None:
    """``BEGIN IMMEDIATE`` without SQLite's busy handler, tried until ``deadline``; the
    connection's busy timeout is ``busy_ms`` again afterwards."""
    await _run(driver, "PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                await _run(driver, "BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            if time.monotonic() >= deadline:
                raise TimeoutError("SQLite stayed locked by another process's writes")
            await asyncio.sleep(_RETRY_S)
    finally:
        await _run(driver, f"PRAGMA busy_timeout = {busy_ms}")


async def _run(driver: Any, statement: str) -> None:
    cursor = await driver.execute(statement)
    await cursor.close()
