"""A replica's health, as Serve's ``check_health`` asks for it.

Serve calls every replica's ``check_health`` each ``health_check_period_s`` and replaces
the replica after three failures in a row. :class:`ReplicaHealth` fails the check when

- a background loop of the replica has stopped (the run queue, lease heartbeats, crons,
  the TTL sweeper, auth invalidations): these loops only end through a bug, and a replica
  without them still answers requests while its queued runs never start; or
- a dependency (the database, Redis) has been unreachable *from this replica* for longer
  than ``grace_s``: a replica whose pool or connection stays broken is replaced.

A shorter outage does not fail it: requests get 503 with ``Retry-After`` meanwhile and
limits follow their failure mode, and replacing every replica at once while the database
restarts would only add start-up time to the outage. The default grace (60 s) outlasts a
restart of either service.

Imports no Ray, so that it is tested without a cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from agent_runtime.config.serve_settings import ServeSettings
from agent_runtime.core.errors import AgentRuntimeError

Probe = Callable[[], Awaitable[object]]


class ReplicaUnhealthy(AgentRuntimeError):
    """Raised by ``check_health``: Serve logs the message and replaces the replica."""

    code = "replica_unhealthy"


class BackgroundLoops(Protocol):
    """A part that runs loops of its own: their tasks, named (once started)."""

    def loops(self) -> Iterable[asyncio.Task[Any]]: ...


class ReplicaHealth:
    """``probes``: dependency name -> a ping that raises when it is unreachable;
    ``parts``: whose loops must keep running."""

    def __init__(
        self,
        probes: Mapping[str, Probe],
        parts: Sequence[BackgroundLoops] = (),
        *,
        grace_s: float,
        probe_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probes = dict(probes)
        self._parts = tuple(parts)
        self._grace_s = grace_s
        self._timeout_s = probe_timeout_s
        self._clock = clock
        self._down_since: dict[str, float] = {}
        self._why: dict[str, str] = {}

    @classmethod
    def from_settings(
        cls,
        settings: ServeSettings,
        probes: Mapping[str, Probe],
        parts: Sequence[BackgroundLoops] = (),
    ) -> ReplicaHealth:
        return cls(
            probes,
            parts,
            grace_s=settings.health_dependency_grace_s,
            probe_timeout_s=settings.health_probe_timeout_s,
        )

    async def check(self) -> None:
        """Raise :class:`ReplicaUnhealthy` naming what is wrong, else return."""
        stopped = self.stopped_loops()
        if stopped:
            raise ReplicaUnhealthy(
                "background loop(s) stopped: " + ", ".join(stopped), stopped=stopped
            )
        results = await asyncio.gather(*(self._probe(name) for name in self._probes))
        now = self._clock()
        for name, failure in zip(self._probes, results, strict=True):
            if failure is None:
                self._down_since.pop(name, None)
                self._why.pop(name, None)
            else:
                self._down_since.setdefault(name, now)
                self._why[name] = failure
        long_down = [
            f"{name} unreachable from this replica for {now - since:.0f} s ({self._why[name]})"
            for name, since in sorted(self._down_since.items())
            if now - since >= self._grace_s
        ]
        if long_down:
            raise ReplicaUnhealthy("; ".join(long_down), down=sorted(self._down_since))

    def stopped_loops(self) -> list[str]:
        """Loops whose task ended: with its exception's type when it raised."""
        stopped = []
        for part in self._parts:
            for task in part.loops():
                if not task.done() or task.cancelled():
                    continue
                name, error = task.get_name(), task.exception()
                stopped.append(f"{name} ({type(error).__name__})" if error else name)
        return stopped

    async def _probe(self, name: str) -> str | None:
        """None when the probe answered in time, else why not (the error's type only:
        a driver's message may name hosts and users)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._probes[name]()
        except TimeoutError:
            return f"no answer in {self._timeout_s:g} s"
        except Exception as error:  # every failure is a "down" verdict, named by its type
            return type(error).__name__
        return None
