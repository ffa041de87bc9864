"""Storage fixtures: one ``StorageSettings`` per backend, each isolated per test.

SQLite lives in the test's ``tmp_path``. Postgres gets a throwaway role whose
``search_path`` is its own schema, so every table (ours and LangGraph's) lands there and
is dropped afterwards; nothing in the store's API changes for it. A Postgres that is down
makes these tests fail, never skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from agent_runtime.config.settings import StorageSettings

POSTGRES_ADMIN_DSN = os.environ.get(
    "AGENT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgres"]


@asynccontextmanager
async def isolated_postgres() -> AsyncIterator[str]:
    """Yield the DSN of a fresh role that sees only its own, empty schema."""
    name = f"agent_test_{secrets.token_hex(6)}"
    password = secrets.token_hex(16)
    parts = urlsplit(POSTGRES_ADMIN_DSN)
    host = f"{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"
    dsn = f"postgresql://{name}:{password}@{host}{parts.path}"
    try:
        await _admin(
            f"CREATE ROLE {name} LOGIN PASSWORD '{password}'",
            f"CREATE SCHEMA {name} AUTHORIZATION {name}",
            f"ALTER ROLE {name} SET search_path = {name}",
        )
        yield dsn
    finally:
        # A fresh admin connection: one held through the test could have been dropped.
        await _admin(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'",
            f"DROP SCHEMA IF EXISTS {name} CASCADE",
            f"DROP ROLE IF EXISTS {name}",
        )


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def backend_settings(backend: str, folder: Path) -> AsyncIterator[StorageSettings]:
    if backend == "sqlite":
        # A folder that does not exist yet: setup() must create it.
        yield StorageSettings(
            data_dir=folder, database_url=f"sqlite:///{folder / 'db' / 'runtime.db'}"
        )
        return
    async with isolated_postgres() as dsn:
        yield StorageSettings(data_dir=folder, database_url=dsn, db_timeout_s=10.0)


@pytest.fixture(params=BACKENDS)
async def storage_settings(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StorageSettings]:
    """Settings for an empty database of each backend."""
    async with backend_settings(request.param, tmp_path) as settings:
        yield settings
