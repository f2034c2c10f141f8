"""Connections to the checked address: an HTTP client whose connections go where the SSRF guard said.

Each attempt resolves its URL's host once and checks every address (`url_guard.resolve_target`), then posts with
that address pinned for its (host, port). The client's network backend opens a new connection to the pinned
address, never resolving the name itself, so a second, different DNS answer can't redirect it. The URL is left
as it is: the `Host` header, and for https the TLS server name and the certificate check, stay the URL's host, and
the pool keeps connections alive per (scheme, host, port) as before. A connection kept alive from an earlier
attempt was opened to an address checked then. A connection for which no address was pinned is refused.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from ains.webhooks import url_guard

# The addresses the current attempt checked, by (host, port); set around each post (it is per asyncio task, and
# httpcore opens a connection in the task of the request that needs it).
_pinned: contextvars.ContextVar[dict[tuple[str, int], str] | None] = contextvars.ContextVar(
    "ains_webhook_pinned", default=None
)

# A test hook: called with (host, port, address) just before a connection to `address` is opened; it may raise
# (an OSError or httpcore.ConnectError) to make the connection fail without any traffic.
before_connect: Callable[[str, int, str], None] | None = None


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections to the address pinned for (host, port), never to whatever the name resolves to."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = (_pinned.get() or {}).get((host.lower(), port))
        if address is None:
            raise httpcore.ConnectError(f"no checked address for {host}:{port}; not connecting")
        if before_connect is not None:
            before_connect(host, port, address)
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhook deliveries never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pinned_client(*, timeout: float, limits: httpx.Limits) -> httpx.AsyncClient:
    """A kept-alive, pooled client that connects only to pinned addresses. It ignores proxy settings from the
    environment (`trust_env=False`): a proxy would make the connection somewhere other than the checked address."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    pool = transport._pool  # httpx builds the httpcore pool; its backend is swapped for the pinning one
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("unexpected httpx transport: cannot pin webhook connections")
    pool._network_backend = PinnedBackend(pool._network_backend)
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)


async def post(
    client: httpx.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    allow_private: bool,
    resolver: url_guard.Resolver | None = None,
) -> httpx.Response:
    """Resolve and check the URL's host (once), then post to the address that passed. Raises ForbiddenTarget."""
    target = await url_guard.resolve_target(url, allow_private=allow_private, resolver=resolver)
    token = _pinned.set({**(_pinned.get() or {}), (target.host, target.port): target.address})
    try:
        return await client.post(url, content=content, headers=headers)
    finally:
        _pinned.reset(token)
