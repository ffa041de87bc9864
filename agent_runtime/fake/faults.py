"""Fault injection of the fake provider: seeded, reproducible draws over the fault profiles.

The profiles (:class:`~agent_runtime.config.fault_profiles.FaultProfile`,
:class:`~agent_runtime.config.fault_profiles.FaultTable`) are configuration and live in
:mod:`agent_runtime.config.fault_profiles`; :func:`configured_faults`
builds the table ``FakeProviderSettings`` describe.

:class:`FaultInjector` turns the table into one :class:`FaultPlan` per call, when the call
starts. Every call of a model draws exactly three uniforms (latency, rate limit, error) from
that model's own ``random.Random`` seeded with ``f"{seed}/{model}"``: the k-th call of a
model gets the same plan whatever other models are called in between, and changing the table
restarts the streams of the models it touches, so a test that sets a profile then makes N
calls sees the same outcomes on every run. This module is pure (no HTTP, no clock).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

from agent_runtime.config.fault_profiles import (
    MAX_DELAY_MS,
    MAX_MODEL_STREAMS,
    FaultProfile,
    FaultTable,
    RateLimit,
    UniformLatency,
)

if TYPE_CHECKING:
    from agent_runtime.config.fake_provider_settings import FakeProviderSettings

_STANDARD = NormalDist()
_EPSILON = 1e-12


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What one call does, drawn when it starts (later table changes do not touch it)."""

    hang: bool = False
    delay_ms: float = 0.0
    status: int | None = None
    retry_after_s: float | None = None
    cut_after_chunks: int | None = None
    first_token_delay_ms: float = 0.0
    inter_token_delay_ms: float = 0.0


def plan_call(profile: FaultProfile, u_latency: float, u_limit: float, u_error: float) -> FaultPlan:
    """The plan for one call of a model with ``profile``, from its three uniform draws."""
    delay_ms = profile.latency_ms
    if profile.latency_distribution is not None:
        u = min(max(u_latency, _EPSILON), 1.0 - _EPSILON)
        delay_ms += profile.latency_distribution.draw(u)
    status: int | None = None
    retry_after_s: float | None = None
    if profile.rate_limit is not None and u_limit < profile.rate_limit.rate:
        status, retry_after_s = 429, profile.rate_limit.retry_after_s
    else:
        # One draw, disjoint intervals in status order: each status has exactly its rate.
        threshold = 0.0
        for candidate, rate in profile.error_rates.items():
            threshold += rate
            if u_error < threshold:
                status = candidate
                break
    return FaultPlan(
        hang=profile.hang,
        delay_ms=min(delay_ms, MAX_DELAY_MS),
        status=status,
        retry_after_s=retry_after_s,
        cut_after_chunks=profile.cut_after_chunks,
        first_token_delay_ms=profile.first_token_delay_ms,
        inter_token_delay_ms=profile.inter_token_delay_ms,
    )


class FaultInjector:
    """The live fault table of one fake provider instance and its per-model random streams."""

    def __init__(self, configured: FaultTable, seed: int = 0) -> None:
        self._configured = configured
        self._table = configured
        self._seed = seed
        self._streams: dict[str, random.Random] = {}
        self._shared = random.Random(f"{seed}/*")

    @property
    def table(self) -> FaultTable:
        return self._table

    @property
    def configured(self) -> FaultTable:
        return self._configured

    def replace(self, table: FaultTable) -> None:
        """Use ``table`` from the next call on; every model's stream restarts."""
        self._table = table
        self._streams.clear()
        self._shared = random.Random(f"{self._seed}/*")

    def set_model(self, model: str, profile: FaultProfile) -> None:
        """Give ``model`` its own profile from the next call on; its stream restarts."""
        self._table = self._table.with_model(model, profile)
        self._streams.pop(model, None)

    def reset(self) -> None:
        """Back to the configured table, streams restarted."""
        self.replace(self._configured)

    def plan(self, model: str) -> FaultPlan:
        stream = self._stream(model)
        draws = stream.random(), stream.random(), stream.random()
        return plan_call(self._table.profile(model), *draws)

    def _stream(self, model: str) -> random.Random:
        stream = self._streams.get(model)
        if stream is None:
            if len(self._streams) >= MAX_MODEL_STREAMS:
                return self._shared
            # A str seed is hashed with SHA-512: the same stream in every process.
            stream = self._streams[model] = random.Random(f"{self._seed}/{model}")
        return stream


def configured_faults(settings: FakeProviderSettings) -> FaultTable:
    """The fault table the settings describe.

    The default profile is ``default_profile`` if set, else the one the flat settings
    describe: ``latency_ms``, ``jitter_ms`` (uniform 0..jitter), ``fail_rate`` of
    ``fail_status`` (a 429 becomes a ``rate_limit``). ``failing_models`` get the default
    profile failing every call with ``fail_status``; ``hanging_models`` hang. Entries of
    ``models`` win over both lists.
    """
    default = settings.default_profile or _flat_default(settings)
    models: dict[str, FaultProfile] = {}
    for model in settings.failing_models:
        models[model] = _always_failing(default, settings.fail_status)
    for model in settings.hanging_models:
        models[model] = FaultProfile(hang=True)
    models.update(settings.models)
    return FaultTable(default=default, models=models)


def _flat_default(settings: FakeProviderSettings) -> FaultProfile:
    distribution = (
        UniformLatency(kind="uniform", high_ms=settings.jitter_ms) if settings.jitter_ms else None
    )
    return _failing(
        FaultProfile(latency_ms=settings.latency_ms, latency_distribution=distribution),
        settings.fail_status,
        settings.fail_rate,
    )


def _always_failing(default: FaultProfile, status: int) -> FaultProfile:
    return _failing(default.model_copy(update={"error_rates": {}, "rate_limit": None}), status, 1.0)


def _failing(profile: FaultProfile, status: int, rate: float) -> FaultProfile:
    if rate <= 0:
        return profile
    if status == 429:
        return profile.model_copy(update={"rate_limit": RateLimit(rate=rate)})
    return profile.model_copy(update={"error_rates": {status: rate}})
