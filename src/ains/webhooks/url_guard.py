"""The SSRF guard: webhook URLs must be http(s) and, unless allowed, resolve only to public addresses.

Checked when a webhook is registered or changed and again before every delivery
attempt (DNS can change); redirects are never followed, so a redirect can't lead
a delivery to a forbidden address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class ForbiddenTarget(ValueError):
    pass


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def check_syntax(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ForbiddenTarget("url must be http or https")
    if not parts.hostname:
        raise ForbiddenTarget("url has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ForbiddenTarget("url has an invalid port") from exc
    return parts.hostname, port


async def check_target(url: str, *, allow_private: bool) -> None:
    """Raise ForbiddenTarget unless `url` may receive deliveries."""
    host, port = check_syntax(url)
    if allow_private:
        return
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ForbiddenTarget(f"url host {host} does not resolve") from exc
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    bad = [str(a) for a in addresses if _forbidden(a)]
    if bad:
        raise ForbiddenTarget(f"url resolves to a loopback, private or link-local address ({', '.join(bad)})")
