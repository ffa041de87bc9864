"""The replica's psycopg pool, which fails at once while the database cannot be reached.

psycopg's pool makes its connections in background workers and lets a caller wait up to
its timeout for one: right for a pool that is busy, wrong for a database that is down,
where every caller would wait the whole timeout for workers that keep failing to connect
(and a health check's ping past its probe's). So :class:`ReplicaPool` notes what each of
its connection attempts said (:class:`Reachability`), and a caller that finds no idle
connection:

- while the last attempt failed, tries to connect itself, bounded by the connect timeout
  (one caller at a time; the others fail at once meanwhile): if it can, the way is open
  again for everyone; if not, it gets :class:`DatabaseUnreachable`, and so does every
  caller for the next ``retry_s``, when one tries again;
- otherwise waits for a connection as usual (a busy pool), but when an attempt of the
  pool's fails meanwhile (the database went away, or a brief outage cut off that
  attempt) decides again as above.

The pool gives up reconnecting in the background after ``3 * retry_s`` (psycopg's
``reconnect_timeout``) rather than backing off for minutes: its callers' attempts take
over, and the first that connects makes the pool grow again at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

# How much longer than retry_s the pool keeps reconnecting by itself (a few attempts).
RECONNECT_TRIES = 3

logger = logging.getLogger(__name__)


class DatabaseUnreachable(PoolTimeout):
    """No connection: the database refused or did not answer the last attempt (a
    ``PoolTimeout``, so whoever handles the pool's timeouts handles this too)."""


class Reachability:
    """The outcome of a pool's latest connection attempt, and who waits to hear of a
    failure. ``retry_s``: how often, while the database is down, a caller tries again."""

    def __init__(self, retry_s: float) -> None:
        self.retry_s = retry_s
        self.failed_at: float | None = None  # the last attempt's time, if it failed
        self.probed = False  # that attempt was a caller's, not the pool's workers'
        self.last_error = ""  # its exception's class (its text names the host)
        self.probing = False
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def down(self) -> bool:
        return self.failed_at is not None

    def probe_due(self) -> bool:
        """Down and no caller is trying: after a failure of the pool's workers (which
        may have been cut off by a brief outage that is over), or ``retry_s`` after a
        caller's."""
        failed_at = self.failed_at
        if failed_at is None or self.probing:
            return False
        return not self.probed or time.monotonic() - failed_at >= self.retry_s

    def connected(self) -> None:
        self.failed_at = None

    def failed(self, error: BaseException, *, probed: bool = False) -> None:
        self.failed_at = time.monotonic()
        self.probed = probed
        self.last_error = type(error).__name__
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def next_failure(self) -> asyncio.Future[None]:
        """Done when an attempt fails; :meth:`forget` it when no longer waiting."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        return waiter

    def forget(self, waiter: asyncio.Future[None]) -> None:
        self._waiters.discard(waiter)
        waiter.cancel()

    def error(self) -> DatabaseUnreachable:
        return DatabaseUnreachable(f"database unreachable ({self.last_error or 'no connection'})")


class ReplicaPool(AsyncConnectionPool[AsyncConnection[DictRow]]):
    """An :class:`AsyncConnectionPool` of ``conninfo`` (a DSN) that fails fast while the
    database is down (the module's docstring); ``retry_s`` as :class:`Reachability`'s."""

    def __init__(
        self, conninfo: str, *, kwargs: dict[str, Any], retry_s: float, **options: Any
    ) -> None:
        super().__init__(
            conninfo, kwargs=kwargs, reconnect_timeout=RECONNECT_TRIES * retry_s, **options
        )
        self._dsn = conninfo
        self._connect_kwargs = kwargs
        self.reachability = Reachability(retry_s)
        # Every connection the pool made, and those its callers hold: what close() must
        # leave to their holders, and what nobody holds (see close()).
        self._made: weakref.WeakSet[AsyncConnection[DictRow]] = weakref.WeakSet()
        self._lent: weakref.WeakSet[AsyncConnection[DictRow]] = weakref.WeakSet()

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (psycopg's)
        """psycopg's close, then any connection of the pool's still open that no caller
        holds. psycopg (pool 3.3) closes those in its queue and those given back later,
        but not one in flight between them: a connection handed to a waiting caller that
        was cancelled meanwhile goes back through a maintenance task, and a closed pool
        drops its pending tasks without closing their connections (they stay open, idle,
        until garbage collected)."""
        await super().close(timeout)
        lost = [conn for conn in list(self._made) if not conn.closed and conn not in self._lent]
        for conn in lost:
            await conn.close()
        if lost:
            logger.warning("pool %s: closed %d connection(s) no caller held", self.name, len(lost))

    # psycopg's signature, which its pool's connection() calls.
    async def getconn(self, timeout: float | None = None) -> AsyncConnection[DictRow]:  # noqa: ASYNC109
        wait_s = self.timeout if timeout is None else timeout
        conn = await self._getconn_or_fail(wait_s)
        self._lent.add(conn)
        return conn

    async def putconn(self, conn: AsyncConnection[DictRow]) -> None:
        self._lent.discard(conn)
        await super().putconn(conn)

    async def _getconn_or_fail(self, wait_s: float) -> AsyncConnection[DictRow]:
        deadline = time.monotonic() + wait_s
        while True:
            if self.get_stats()["pool_available"]:
                return await super().getconn(wait_s)  # idle ones: no wait
            reachability = self.reachability
            if reachability.down:
                if not reachability.probe_due():
                    raise reachability.error()
                await self._probe()
            conn = await self._getconn_unless_down(wait_s)
            if conn is not None:
                return conn
            wait_s = deadline - time.monotonic()  # an attempt failed: decide again

    async def _probe(self) -> None:
        """Connect once, outside the pool (its workers may be backing off): the caller
        that does it waits up to the connect timeout, the others fail meanwhile."""
        reachability = self.reachability
        reachability.probing = True
        try:
            conn = await AsyncConnection.connect(self._dsn, **self._connect_kwargs)
        except Exception as exc:
            reachability.failed(exc, probed=True)
            raise reachability.error() from exc
        finally:
            reachability.probing = False
        await conn.close()
        reachability.connected()  # the pool's next attempt (this caller's) goes at once

    async def _getconn_unless_down(self, wait_s: float) -> AsyncConnection[DictRow] | None:
        """The pool's wait for a connection; None if a connection attempt failed first."""
        getting = asyncio.ensure_future(super().getconn(wait_s))
        went_down = self.reachability.next_failure()
        try:
            await asyncio.wait((getting, went_down), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled: the pool takes back what it gave meanwhile
            getting.cancel()
            if getting.done() and not getting.cancelled() and getting.exception() is None:
                await self.putconn(getting.result())
            raise
        finally:
            self.reachability.forget(went_down)
        if not getting.done():
            getting.cancel()  # psycopg's wait forgets a cancelled waiter
            await asyncio.wait((getting,))
            if getting.cancelled():
                return None
        return getting.result()  # a connection, or the pool's timeout

    async def _connect(self, timeout: float | None = None) -> AsyncConnection[DictRow]:  # noqa: ASYNC109
        # The pool's one way to a new connection (psycopg_pool 3.x): every attempt's
        # outcome is what the next caller without an idle connection goes by.
        try:
            conn = await super()._connect(timeout)
        except Exception as exc:
            self.reachability.failed(exc)
            raise
        self.reachability.connected()
        self._made.add(conn)
        return conn
