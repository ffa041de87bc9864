"""The exceptions of the drivers under the runtime's storage (Postgres, SQLite, Redis).

Their text names hosts, ports, users and databases: fine in an operator's log, never in
what a tenant reads. :func:`driver_error` finds one in an exception's chain, so the run
executor can report "a dependency failed" instead (``DependencyUnavailable``).
"""

from __future__ import annotations

import sqlite3

import asyncpg
import psycopg
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlite3.Error,
    SQLAlchemyError,
    RedisError,
)
MAX_CHAIN = 8  # causes and contexts followed; exception chains are short


def driver_error(error: BaseException) -> BaseException | None:
    """The first driver exception in ``error``'s chain (itself, its causes, contexts)."""
    seen: BaseException | None = error
    for _ in range(MAX_CHAIN):
        if seen is None:
            return None
        if isinstance(seen, DRIVER_ERRORS):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
