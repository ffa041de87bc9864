"""Calling other deployments: typed errors survive the hop, Ray's wrappers do not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ray.exceptions import RayTaskError

from agent_runtime.core.errors import AgentRuntimeError


def unwrap(error: BaseException) -> BaseException:
    """The runtime error a remote replica raised, without Ray's RayTaskError wrapper.

    Ray's wrapper prints the remote traceback in ``str()``; unwrapping keeps traces out of
    responses and logs.
    """
    cause = getattr(error, "cause", None) if isinstance(error, RayTaskError) else None
    if isinstance(cause, AgentRuntimeError):
        return cause
    return error


async def call(response: Any) -> Any:
    """Await a DeploymentResponse, re-raising the remote runtime error as itself."""
    try:
        return await response
    except RayTaskError as error:
        raise unwrap(error) from None


async def iterate(generator: Any) -> AsyncIterator[Any]:
    """Iterate a DeploymentResponseGenerator, re-raising remote runtime errors as themselves."""
    try:
        async for item in generator:
            yield item
    except RayTaskError as error:
        raise unwrap(error) from None
