"""No database or Redis password in any error message, log line or exception chain, on
every path that connects: metadata store, checkpointer, item store, limiters (both
failure modes), budgets, breakers and auth invalidations. Each is pointed at a server
that refuses (a closed port) and, for Postgres, at the real server with a password and a
database that does not exist; everything logged at DEBUG is captured and grepped.

The e2e suite (tests/e2e/test_secrets.py) greps a whole stack's logs for the API,
provider and admin keys; this covers the passwords of the connection strings.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from agent_runtime.config.models_file import BreakerPolicy
from agent_runtime.config.settings import (
    BudgetSettings,
    ItemStoreSettings,
    LimitSettings,
    StorageSettings,
)
from agent_runtime.core.errors import AgentRuntimeError
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.execution.checkpointers import Checkpointers
from agent_runtime.execution.item_store import ItemStores
from agent_runtime.gateway.shared_breakers import build_breakers
from agent_runtime.tenancy.auth import AuthInvalidations
from agent_runtime.tenancy.budgets import build_budget_guard
from agent_runtime.tenancy.fair_use import build_token_rate_observer
from agent_runtime.tenancy.tenants import TenantStore
from agent_runtime.tenancy.token_buckets import build_limiter
from tests.backends import POSTGRES_ADMIN_DSN

PASSWORD = "Pw-that-must-never-leak-9f3a"
REDIS_DOWN = f"redis://:{PASSWORD}@127.0.0.1:1/0"


def postgres_urls() -> list[str]:
    parts = urlsplit(POSTGRES_ADMIN_DSN)
    host = f"{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"
    return [
        f"postgresql://agent:{PASSWORD}@127.0.0.1:1/test",  # nothing listens
        f"postgresql://agent:{PASSWORD}@{host}/no_such_db_for_secrets",  # refused by the server
    ]


def chain(error: BaseException) -> str:
    """Everything an exception could show: messages, details, causes, the traceback."""
    seen = "".join(traceback.format_exception(error))
    parts = [seen]
    current: BaseException | None = error
    while current is not None:
        parts += [str(current), repr(current)]
        if isinstance(current, AgentRuntimeError):
            parts += [current.message, repr(current.details)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


async def expect_failure(call: Callable[[], Awaitable[Any]]) -> str:
    try:
        await call()
    except Exception as error:
        return chain(error)
    raise AssertionError("expected the call to fail")


@pytest.mark.parametrize("url", postgres_urls())
async def test_postgres_paths(url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    storage = StorageSettings(data_dir=tmp_path, database_url=url, db_timeout_s=2.0)
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        store = MetadataStore(storage)
        texts.append(await expect_failure(store.setup))
        texts.append(await expect_failure(store.ping))
        texts.append(await expect_failure(lambda: store.get_tenant("t")))
        texts.append(await expect_failure(lambda: TenantStore(store).get_limits("t")))
        await store.close()
        checkpointers = Checkpointers(storage)
        texts.append(await expect_failure(checkpointers.setup))
        await checkpointers.close()
        items = ItemStores(storage, ItemStoreSettings())
        texts.append(await expect_failure(items.setup))
        await items.close()
    texts.append(caplog.text)
    for text in texts:
        assert PASSWORD not in text, text


async def test_redis_paths(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    texts: list[str] = []
    store = MetadataStore(StorageSettings(data_dir=tmp_path))
    await store.setup()
    await store.ensure_tenant("t", "t")
    with caplog.at_level(logging.DEBUG):
        for mode in ("fail_open", "fail_closed"):
            limits = LimitSettings(
                redis_url=SecretStr(REDIS_DOWN), redis_timeout_s=0.5, rate_limit_failure_mode=mode
            )
            limiter = build_limiter(limits)
            if mode == "fail_closed":
                texts.append(await expect_failure(lambda bucket=limiter: bucket.hit("key:k")))
            else:
                await limiter.hit("key:k")
            texts.append(await expect_failure(limiter.ping))
            await limiter.close()
            observer = build_token_rate_observer(limits, BudgetSettings(), TenantStore(store))
            texts.append(await expect_failure(observer.ping))
            await observer.close()
            texts.append(repr(limits))
        guard = build_budget_guard(limits, BudgetSettings(), store)
        texts.append(await expect_failure(guard.ping))
        await guard.close()
        breakers = build_breakers(BreakerPolicy(), REDIS_DOWN, redis_timeout_s=0.5)
        texts.append(repr(breakers.states()))
        await breakers.close()
        invalidations = AuthInvalidations(REDIS_DOWN, timeout_s=0.5)
        assert not await invalidations.publish("key", "k")
        await invalidations.close()
    await store.close()
    texts.append(caplog.text)
    for text in texts:
        assert PASSWORD not in text, text
