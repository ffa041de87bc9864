"""A TCP proxy the tests can cut: the chaos tests put it between the stack and PostgreSQL.

``down()`` drops every open connection and stops listening (new connections are refused,
as when the server restarts); ``hang()`` drops them too but accepts new ones and never
answers (a server that hangs); ``up()`` forwards again on the same port. It runs its own
event loop in a thread, so tests on any loop (and replicas in other processes) use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")
TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


class TcpProxy:
    """127.0.0.1:``port`` forwarding to ``target_host``:``target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = _free_port()
        self.connections = 0
        self.hung = 0  # connections accepted while hanging
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._hanging = False

    @classmethod
    def to_url(cls, url: str, default_port: int = 5432) -> TcpProxy:
        """A started proxy to the host and port of ``url`` (e.g. a database URL)."""
        parts = urlsplit(url)
        proxy = cls(parts.hostname or "127.0.0.1", parts.port or default_port)
        proxy.start()
        return proxy

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(TIMEOUT_S)

    def start(self) -> None:
        self._thread.start()
        self.up()

    def up(self) -> None:
        self._hanging = False
        self._call(self._listen())

    def hang(self) -> None:
        self.down()
        self._hanging = True
        self._call(self._listen())

    def down(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT_S)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()  # a reset, not a polite close: the server is gone
        self._open.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._hanging:  # read the request, answer nothing, until cut or closed
            self.hung += 1
            self._open.add(writer)
            with contextlib.suppress(ConnectionError, OSError):
                while await reader.read(65536):
                    pass
            self._open.discard(writer)
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._open |= {writer, upstream}
        try:
            await asyncio.gather(_pipe(reader, upstream), _pipe(upstream_reader, writer))
        finally:
            self._open -= {writer, upstream}


def proxied_url(url: str, proxy: TcpProxy) -> str:
    """``url`` with its host and port replaced by the proxy's (credentials kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{proxy.port}" if userinfo else f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))
