"""Webhook delivery against receivers that misbehave, on real local sockets: bodies that
never end or trickle, a receiver that holds requests, a name that resolves differently the
second time, and TLS to a pinned address.

Receivers listen on loopback, so senders here allow private addresses (as
``AGENT_WEBHOOK_ALLOW_PRIVATE`` does) unless the test is about refusing them.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request, Response

from agent_runtime.runs.webhooks import WebhookSender
from tests.servers import served

PAYLOAD = {"run_id": "r1", "status": "success"}
CHUNK = b"x" * 65536


class RawReceiver:
    """An HTTP server written by hand: reads one request, answers 200 with a chunked body
    from ``body`` (which may never end), and counts the bytes it managed to send."""

    def __init__(self, body: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> None:
        self._body = body
        self.sent = 0
        self.requests = 0
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            self.requests += 1
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            await self._body(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the sender hung up: what these tests want
        finally:
            writer.close()
            self.closed.set()

    async def chunk(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
        self.sent += len(data)


@asynccontextmanager
async def raw_served(receiver: RawReceiver) -> AsyncIterator[str]:
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()


async def test_an_endless_body_is_not_read_past_a_few_kilobytes() -> None:
    async def endless(writer: asyncio.StreamWriter) -> None:
        while True:
            await receiver.chunk(writer, CHUNK)

    receiver = RawReceiver(endless)
    async with raw_served(receiver) as url:
        tracemalloc.start()
        try:
            async with asyncio.timeout(5):  # before the fix: read until memory runs out
                assert await WebhookSender(allow_private=True, timeout_s=3).send(url, PAYLOAD)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        async with asyncio.timeout(5):
            await receiver.closed.wait()
    # The sender hung up after the first few KB: the receiver could only fill the sockets'
    # buffers, and the sender never held more than a read's worth at once.
    assert receiver.sent < 32 * 2**20
    assert peak < 4 * 2**20


async def test_a_trickling_body_ends_the_try_at_its_deadline() -> None:
    async def trickle(writer: asyncio.StreamWriter) -> None:
        while True:  # one byte every 50 ms: never idle long enough for a read timeout
            await receiver.chunk(writer, b"x")
            await asyncio.sleep(0.05)

    receiver = RawReceiver(trickle)
    async with raw_served(receiver) as url:
        sender = WebhookSender(allow_private=True, timeout_s=1, attempts=2)
        started = time.monotonic()
        async with asyncio.timeout(10):  # before the fix: never returns
            delivered = await sender.send(url, PAYLOAD)
        elapsed = time.monotonic() - started
    # The receiver said 200: delivered, and not sent twice.
    assert delivered
    assert receiver.requests == 1
    assert elapsed < 2


async def test_a_receiver_that_never_answers_costs_each_try_its_deadline() -> None:
    async def silent(request: Request) -> Response:
        await asyncio.Event().wait()
        return Response(status_code=204)

    app = FastAPI()
    app.post("/hook")(silent)
    outcomes: list[str] = []
    async with served(app) as v1_url:
        sender = WebhookSender(
            allow_private=True, timeout_s=0.5, attempts=2, on_outcome=outcomes.append
        )
        started = time.monotonic()
        assert not await sender.send(v1_url.removesuffix("/v1") + "/hook", PAYLOAD)
    assert time.monotonic() - started < 3
    assert outcomes == ["failed"]


class HeldReceiver:
    """Holds every request until released; records the Host header of each."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.app = FastAPI()
        self.app.post("/hook")(self.hook)

    async def hook(self, request: Request) -> Response:
        self.hosts.append(request.headers["host"])
        self.arrived.set()
        await self.release.wait()
        return Response(status_code=204)


async def test_deliveries_past_the_cap_are_dropped_and_counted() -> None:
    held = HeldReceiver()
    outcomes: list[str] = []
    sender = WebhookSender(allow_private=True, max_in_flight=1, on_outcome=outcomes.append)
    async with served(held.app) as v1_url:
        url = v1_url.removesuffix("/v1") + "/hook"
        first = asyncio.create_task(sender.send(url, PAYLOAD))
        async with asyncio.timeout(5):
            await held.arrived.wait()
        assert not await sender.send(url, {**PAYLOAD, "run_id": "r2"})
        assert outcomes == ["dropped"]
        held.release.set()
        assert await first
        # The cap counts deliveries in flight, not deliveries ever made.
        assert await sender.send(url, {**PAYLOAD, "run_id": "r3"})
    assert outcomes == ["dropped", "delivered", "delivered"]
    assert len(held.hosts) == 2


class ChangingResolver:
    """DNS that answers ``answers`` in turn: a rebinding attacker's name server."""

    def __init__(self, *answers: list[str]) -> None:
        self._answers = list(answers)
        self.calls = 0

    async def __call__(self, host: str) -> list[str]:
        self.calls += 1
        return self._answers[min(self.calls, len(self._answers)) - 1]


async def test_delivery_resolves_once_and_connects_to_the_address_it_checked() -> None:
    held = HeldReceiver()
    held.release.set()
    async with served(held.app) as v1_url:
        port = v1_url.split(":")[2].split("/")[0]
        # A second lookup would send the request to 127.0.0.2, where nothing listens.
        resolver = ChangingResolver(["127.0.0.1"], ["127.0.0.2"])
        sender = WebhookSender(allow_private=True, resolver=resolver, attempts=1)
        assert await sender.send(f"http://hook.test:{port}/hook", PAYLOAD)
    assert resolver.calls == 1
    # The receiver sees the name the URL gave, not the address.
    assert held.hosts == [f"hook.test:{port}"]


async def test_a_name_that_rebinds_to_a_private_address_after_the_check_is_not_called() -> None:
    held = HeldReceiver()
    held.release.set()
    outcomes: list[str] = []
    async with served(held.app) as v1_url:
        port = v1_url.split(":")[2].split("/")[0]
        url = f"http://hook.test:{port}/hook"
        resolver = ChangingResolver(["93.184.216.34"], ["127.0.0.1"])
        sender = WebhookSender(resolver=resolver, on_outcome=outcomes.append)
        assert await sender.check(url) == url  # at the run's creation: a public address
        assert not await sender.send(url, PAYLOAD)  # at its end: loopback, refused
    assert held.hosts == []
    assert outcomes == ["refused"]


def self_signed(name: str, folder: Path) -> tuple[Path, Path]:
    """A certificate for ``name`` that is its own authority, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_to_the_pinned_address_verifies_the_names_certificate(tmp_path: Path) -> None:
    cert_file, key_file = self_signed("hook.test", tmp_path)
    held = HeldReceiver()
    held.release.set()
    tls = {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}
    async with served(held.app, **tls) as v1_url:
        port = v1_url.split(":")[2].split("/")[0]
        trust = ssl.create_default_context(cafile=str(cert_file))
        resolver = ChangingResolver(["127.0.0.1"])
        sender = WebhookSender(allow_private=True, resolver=resolver, tls=trust, attempts=1)
        # SNI and the certificate check use the name, the connection the checked address.
        assert await sender.send(f"https://hook.test:{port}/hook", PAYLOAD)
        # A certificate that does not name the host is refused, as without pinning.
        other = WebhookSender(allow_private=True, resolver=resolver, tls=trust, attempts=1)
        assert not await other.send(f"https://other.test:{port}/hook", PAYLOAD)
    assert held.hosts == [f"hook.test:{port}"]
