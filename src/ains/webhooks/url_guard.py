"""The SSRF guard: webhook URLs must be http(s) and, unless allowed, resolve only to globally routable addresses.

One check, used twice: when a webhook is registered or changed (`check_target`), and on every delivery attempt
(`resolve_target`), which resolves the host once, checks every address it got, and returns the address the
attempt then connects to (see `ains.webhooks.pinning`), so a name that answers differently a moment later
(DNS rebinding) can't steer the connection elsewhere. Redirects are never followed, so a redirect can't lead a
delivery to a forbidden address either.

The resolver is injectable: `resolver` here is what both call unless given one, by default the event loop's
`getaddrinfo`; tests set it to a function of their own.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ipaddress
import re
import socket
import types
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx
import yarl

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) → the addresses it resolves to, as strings, in the resolver's order.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

# A host made only of numbers (decimal, octal or hex): an address, if anything. Written other than as an address
# literal (`127.1`, `2130706433`, `1.2.3.4.`), the system's resolver would turn it into one, and the HTTP client
# refuses it, so it could never be delivered to.
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?", re.IGNORECASE)

# NAT64's well-known prefix: its last 32 bits are an IPv4 address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class ForbiddenTarget(ValueError):
    pass


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# What check_target and resolve_target call when not given a resolver (looked up at each call).
resolver: Resolver = system_resolver


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries: IPv4-mapped, 6to4, Teredo (its client) or NAT64."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_allowed_address(value: str | Address) -> bool:
    """Whether a delivery may connect to this address when private targets are not allowed: it is globally
    routable (`is_global`), and not multicast, reserved or unspecified. An IPv6 form that carries an IPv4 address
    (mapped, 6to4, Teredo, NAT64) is judged by that IPv4 address."""
    address = ipaddress.ip_address(value.split("%", 1)[0]) if isinstance(value, str) else value
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_allowed_address(embedded)
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: the URL's host and port, and the checked address to connect to."""

    host: str
    port: int
    address: str


@dataclass(frozen=True)
class Endpoint:
    """A webhook URL taken apart once: its host and port as `check_syntax` gives them, and what a request to it
    sends (the URL without its user info, and the headers every request to it carries)."""

    host: str
    port: int
    url: yarl.URL
    # Host, and Basic credentials from the URL's user info as httpx sent them. Read-only: one Endpoint is shared
    # by every attempt to its URL (see `endpoint`'s cache).
    headers: Mapping[str, str]


@functools.lru_cache(maxsize=1024)
def endpoint(url: str) -> Endpoint:
    """The URL's parts (a webhook's URL is parsed once, not at every attempt); raises ForbiddenTarget."""
    try:
        parsed = httpx.URL(url)
        # Encoded on first use: a host httpx parsed but can't encode (a zone id in full-width letters) fails here.
        raw_host, netloc, target = parsed.raw_host, parsed.netloc, parsed.raw_path
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ForbiddenTarget("url is not a valid URL") from exc
    if parsed.scheme not in ("http", "https"):
        raise ForbiddenTarget("url must be http or https")
    host = raw_host.decode("ascii", "replace")
    if not host:
        raise ForbiddenTarget("url has no host")
    empty_label = "" in host.removesuffix(".").split(".")  # a single trailing dot is a fully qualified name
    if empty_label or (_NUMERIC_HOST.fullmatch(host) and _literal(host) is None):
        raise ForbiddenTarget("url host is neither a name nor an address written in full (such as 192.0.2.10)")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not 0 < port < 65536:
        raise ForbiddenTarget("url has an invalid port")
    try:
        host_and_port = netloc.decode("ascii")  # without the user info
        wire = yarl.URL(f"{parsed.scheme}://{host_and_port}{target.decode('ascii')}", encoded=True)
    except (TypeError, ValueError) as exc:
        raise ForbiddenTarget("url is not a valid URL") from exc
    headers = {"Host": host_and_port}
    if parsed.username or parsed.password:
        token = base64.b64encode(f"{parsed.username}:{parsed.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return Endpoint(host.lower(), port, wire, types.MappingProxyType(headers))


def _literal(host: str) -> Address | None:
    """The address a host is, if it is an address literal."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_syntax(url: str) -> tuple[str, int]:
    """The URL's host (as sent on the wire: IDNA-encoded, IPv6 without brackets) and port; http(s) only."""
    parts = endpoint(url)
    return parts.host, parts.port


async def _addresses(host: str, port: int, use: Resolver | None) -> list[str]:
    literal = _literal(host)
    if literal is not None:
        return [str(literal)]
    try:
        answers = await (use or resolver)(host, port)
    except (OSError, UnicodeError) as exc:
        raise ForbiddenTarget(f"url host {host} does not resolve") from exc
    addresses = [str(ipaddress.ip_address(a.split("%", 1)[0])) for a in answers]
    if not addresses:
        raise ForbiddenTarget(f"url host {host} does not resolve")
    return list(dict.fromkeys(addresses))


def _refuse_forbidden(addresses: list[str]) -> None:
    bad = [a for a in addresses if not is_allowed_address(a)]
    if bad:
        raise ForbiddenTarget(
            f"url resolves to an address that is not globally routable ({', '.join(bad)}): loopback, private, "
            "link-local, shared, documentation, reserved or multicast"
        )


async def resolve_target(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> Target:
    """Resolve the URL's host once, check every address, and answer the first: the one to connect to."""
    host, port = check_syntax(url)
    addresses = await _addresses(host, port, resolver)
    if not allow_private:
        _refuse_forbidden(addresses)
    return Target(host, port, addresses[0])


async def check_target(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> None:
    """Raise ForbiddenTarget unless `url` may receive deliveries (at registration: private targets allowed,
    a name needn't resolve yet)."""
    host, port = check_syntax(url)
    if allow_private:
        return
    _refuse_forbidden(await _addresses(host, port, resolver))
