"""Session-wide test settings: where the real services are.

Tests that need PostgreSQL or Redis connect to these URLs and fail (never skip) when the
service is down; `.ci/run` starts both before `make test`.
"""

from __future__ import annotations

import os

import pytest

# The per-backend storage fixture, for the tests of every package.
from tests.backends import storage_settings  # noqa: F401

# Ray 2.60 turns token auth on by default; the test cluster runs without it.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The same Serve mode `make run` uses (agent_runtime/cli/launch.py).
os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
# As `make run` does: no 30 s wait for load balancers when the session's stack stops.
os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "0.5")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return os.environ.get("AGENT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("AGENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
