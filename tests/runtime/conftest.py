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

from runtime.settings import StorageSettings

POSTGRES_ADMIN_DSN = os.environ.get(
    "AGENT_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgres"]


@asynccontextmanager
async def isolated_postgres() -> AsyncIterator[str]:
    """Yield the DSN of a fresh role that sees only its own, empty schema."""
    name = f"agent_test_{secrets.token_hex(6)}"
    password = secrets.token_hex(16)
    admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        await admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
        await admin.execute(f"ALTER ROLE {name} SET search_path = {name}")
        parts = urlsplit(POSTGRES_ADMIN_DSN)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 5432
        yield f"postgresql://{name}:{password}@{host}:{port}{parts.path}"
    finally:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name
        )
        await admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        await admin.execute(f"DROP ROLE IF EXISTS {name}")
        await admin.close()


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
