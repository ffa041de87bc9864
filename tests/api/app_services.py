"""The ingress's :class:`Services` for the API tests' apps in process, built in one place.

The deployment builds the whole set with ``Services.open``; these tests build only what
the routes they reach use: a real store, authenticator (no cache) and limiter, the
default graphs, and no deployment handles, items, assistants or budgets unless a test
passes its own. Ray's metric objects need a running cluster, so metrics are a stub.
"""

from __future__ import annotations

from typing import Any

from agent_runtime.api.deps import Services
from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.serve_settings import ServeSettings
from agent_runtime.config.settings import LimitSettings, RuntimeSettings, StorageSettings
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.tenancy.auth import Authenticator
from agent_runtime.tenancy.token_buckets import build_limiter
from tests.example_graphs import example_graphs


class Counter:
    """Stands in for a Ray counter: keeps the tags of each increment."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.seen.append(tags or {})


class Metrics:
    """Stands in for ``IngressMetrics``: counts refusals, observes nothing else."""

    def __init__(self) -> None:
        self.rate_limited = Counter()

    def observe(self, *args: Any) -> None:
        return None


def runtime_settings(storage: StorageSettings, **fields: Any) -> RuntimeSettings:
    """Settings without Redis; ``fields`` replace any part (``limits``, ``budgets`` ...)."""
    parts: dict[str, Any] = {
        "limits": LimitSettings(redis_url=None),
        "provider": ProviderSettings(),
        "fake": FakeProviderSettings(),
        "serve": ServeSettings(),
        **fields,
    }
    return RuntimeSettings(storage=storage, **parts)


def services(store: MetadataStore, settings: RuntimeSettings, **parts: Any) -> Services:
    """Services over ``store``; ``parts`` replace or add fields (``orchestrator``,
    ``router``, ``items``, ``budgets``, a ``limiter`` of the test's own ...)."""
    fields: dict[str, Any] = {
        "settings": settings,
        "store": store,
        "auth": Authenticator(store, cache_ttl_s=0),
        "orchestrator": None,
        "router": None,
        "metrics": Metrics(),
        "graphs": example_graphs(),
        **parts,
    }
    if "limiter" not in fields:
        fields["limiter"] = build_limiter(settings.limits)
    return Services(**fields)
