"""Fixtures of the tenancy tests: a Redis client and a key prefix cleaned up after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.tenancy.redis_helpers import delete_prefix, new_client, unique_prefix


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = new_client()
    await client.ping()  # a Redis that is down fails the test here
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis_client: Redis) -> AsyncIterator[str]:
    prefix = unique_prefix()
    yield prefix
    await delete_prefix(redis_client, prefix)
