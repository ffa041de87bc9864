"""The eval tests' fixture: a model router over the built-in fake provider, in process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent_runtime.evals.local import local_router
from agent_runtime.gateway.model_router import ModelRouter


@pytest.fixture
async def router() -> AsyncIterator[ModelRouter]:
    async with local_router() as r:
        yield r
