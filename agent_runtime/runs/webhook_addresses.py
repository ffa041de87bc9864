"""Where a webhook may connect: a host resolved once, every address it resolves to checked,
and the request aimed at one of those addresses.

The address checked must be the address connected to: were the sender to hand the URL to
an HTTP client, the client would resolve the name again, and a name server that answers a
public address to the check and ``127.0.0.1`` to the connection (DNS rebinding) would
reach the cluster. So :func:`pinned` rewrites the URL to the checked address and keeps the
name where the receiver and TLS need it: the ``Host`` header, SNI and the certificate check.

An IPv6 address that carries an IPv4 address reaches that IPv4 address (through the host's
own stack, a NAT64 gateway or a 6to4/Teredo relay), so it is checked as that IPv4 address
too: Python's ``is_global`` calls most of these forms global, ``::127.0.0.1`` included.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from agent_runtime.core.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Awaitable[Sequence[str]]]
"""A host name's addresses, as text (``getaddrinfo``'s in production)."""

_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # ::a.b.c.d (deprecated, RFC 4291)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix (RFC 6052)
# Local-use NAT64 (RFC 8215): where its IPv4 sits depends on the operator's prefix length,
# and it never leaves the operator's network, so it is private outright.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")

PRIVATE_TARGET = (
    "webhook: the host resolves to a private or loopback address, which this server does "
    "not call (set AGENT_WEBHOOK_ALLOW_PRIVATE=true to allow it)"
)


async def system_resolver(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


async def resolve(host: str, resolver: Resolver) -> list[IPAddress]:
    """``host``'s addresses, each once, in the resolver's order (a literal is itself)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        answers = await resolver(host)
        addresses = [ipaddress.ip_address(answer) for answer in answers]
    except (OSError, ValueError):
        raise InvalidRequest(f"webhook: cannot resolve host {host!r}") from None
    if not addresses:
        raise InvalidRequest(f"webhook: cannot resolve host {host!r}")
    return list(dict.fromkeys(addresses))


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, if it is one of the forms that do."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        return address.ipv4_mapped
    if address.sixtofour is not None:  # 2002:aabb:ccdd::/48
        return address.sixtofour
    if address.teredo is not None:  # 2001::/32: (server, client); traffic goes to the client
        return address.teredo[1]
    if address in _IPV4_COMPATIBLE or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether a webhook may connect to ``address``: global, and so is any IPv4 it carries."""
    if not address.is_global or address in _LOCAL_NAT64:
        return False
    inner = embedded_ipv4(address)
    return inner is None or inner.is_global


def refuse_private(addresses: Sequence[IPAddress]) -> None:
    """:class:`InvalidRequest` unless every address is public: a name that resolves to one
    private address among public ones could be connected to that one."""
    if not all(is_public(address) for address in addresses):
        raise InvalidRequest(PRIVATE_TARGET)


def pinned(url: httpx.URL, address: IPAddress) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The request's URL aimed at ``address``, its ``Host`` header and its extensions (SNI,
    hence the certificate check, on the URL's own name)."""
    headers = {"host": url.netloc.decode("ascii")}
    extensions: dict[str, Any] = {}
    if url.scheme == "https":
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
    return url.copy_with(host=str(address)), headers, extensions
