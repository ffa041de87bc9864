"""Serving an ASGI app on a real socket, for tests that need real timeouts or streaming.

httpx's in-process ASGI transport buffers whole responses and applies no timeouts, so
tests of hangs and mid-stream cuts run the app under uvicorn on a free local port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


@asynccontextmanager
async def served(app: Any, **options: Any) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on a free port; yields its ``/v1`` base URL (https when
    ``options``, more of uvicorn's, name a certificate)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="critical",
        lifespan="off",
        timeout_graceful_shutdown=1,
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not task.done(), "uvicorn stopped before it started"
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        scheme = "https" if "ssl_certfile" in options else "http"
        yield f"{scheme}://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
