"""Connections to the checked address: an HTTP connection pool whose connections go where the SSRF guard said.

Each attempt resolves its URL's host once and checks every address (`url_guard.resolve_target`), then posts with
that address pinned for its (host, port). A new connection goes to the pinned address, the name is never resolved
again, so a second, different DNS answer can't redirect it. The URL is left as it is: the `Host` header, and for
https the TLS server name and the certificate check, stay the URL's host, and the pool keeps connections alive per
(scheme, host, port). A connection kept alive from an earlier attempt was opened to an address checked then. A
request for which no address was pinned is refused.

HTTP is aiohttp's (its C parser and writer cost a delivery about half of what httpcore's pure-Python HTTP/1.1
did: benchmarks/README.md, fourteenth session). The pool is ours: each of its connections is an aiohttp session
whose connector holds one connection, so the pool alone decides how many are open (in use and idle, over every
host) and which idle one goes first, and aiohttp's connector only connects, speaks HTTP and notices a connection
the receiver closed. A delivery needs one POST and the answer's status and headers, never follows a redirect, and
uses no proxy from the environment: a proxy would make the connection somewhere other than the checked address.
"""

from __future__ import annotations

import asyncio
import contextvars
import select
import socket
import ssl
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp.abc
import httpx

from ains.webhooks import url_guard

# The addresses the current attempt checked, by (host, port); set around each post (it is per asyncio task, and a
# connection is opened in the task of the request that needs it).
_pinned: contextvars.ContextVar[dict[tuple[str, int], str] | None] = contextvars.ContextVar(
    "ains_webhook_pinned", default=None
)

# A test hook: called with (host, port, address) just before a connection to `address` is opened for a URL that
# names its host (an address literal is connected to as it is); it may raise ConnectError to make the connection
# fail without any traffic.
before_connect: Callable[[str, int, str], None] | None = None

# How much of an answer's body is read (and dropped) so its connection can be reused; past this the connection
# is closed instead: a receiver that answers with megabytes costs the dispatcher nothing more.
ANSWER_BYTES_READ = 64 * 1024

# How long a TLS connection aiohttp closes (after `Connection: close`, or an answer broken off) waits for the peer's
# close_notify before it is aborted; Python's SSL transport would wait 30 s, its socket no longer counted by the
# pool. aiohttp deprecates the option (for its 4.0, which pyproject.toml excludes) without another way to say it.
SSL_SHUTDOWN_SECONDS = 0.1

# What every delivery sends besides its own headers (Host, Content-Length and the signature headers).
_COMMON_HEADERS = {"Accept": "*/*", "User-Agent": "ains-webhooks"}


class DeliveryError(Exception):
    """An attempt's HTTP exchange failed: no connection, no complete answer in time, or a broken one."""


class ConnectError(DeliveryError):
    """No connection: refused, unreachable, the TLS handshake or certificate failed, or no checked address."""


class Timeout(DeliveryError):
    """No complete answer within the attempt's timeout (waiting for a connection included)."""


class _PinnedResolver(aiohttp.abc.AbstractResolver):
    """What aiohttp's connector calls before it opens a connection to a named host: the address the current attempt
    pinned for (host, port), never a fresh DNS answer."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        address = (_pinned.get() or {}).get((host.lower(), port))
        if address is None:
            raise ConnectError(f"no checked address for {host}:{port}; not connecting")
        if before_connect is not None:
            before_connect(host, port, address)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


_RESOLVER = _PinnedResolver()


class KeptConnection:
    """One connection of the pool: an aiohttp session whose connector holds at most one connection, used by one
    request at a time. aiohttp opens its connection when a request needs one (the first, or after the receiver
    closed the last), to the address that request's attempt checked."""

    def __init__(self, ssl_context: ssl.SSLContext, keepalive_expiry: float) -> None:
        self._keepalive_expiry = keepalive_expiry
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The ssl_shutdown_timeout parameter is deprecated", DeprecationWarning)
            connector = aiohttp.TCPConnector(
                limit=1,
                use_dns_cache=False,
                resolver=_RESOLVER,
                ssl=ssl_context,
                keepalive_timeout=keepalive_expiry,
                ssl_shutdown_timeout=SSL_SHUTDOWN_SECONDS,
                socket_factory=self._new_socket,
            )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),  # the pool's one deadline per attempt bounds everything
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept-Encoding",),
        )
        self.idle_since = time.monotonic()
        self._poll: select.poll | None = None

    def _new_socket(self, address: tuple[Any, ...]) -> socket.socket:
        """aiohttp's connector makes its sockets here: the pool keeps an eye on the newest (the connector holds one)."""
        family, kind, protocol, _name, _address = address
        sock = socket.socket(family, kind, protocol)
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        return sock

    def is_closed(self) -> bool:
        """Closed, or not to be used again: its socket has something to read while no request is waiting for it
        (the receiver closed it, or sent bytes nobody asked for). aiohttp notices a close only once its event loop
        has read it, and a close still in the socket's buffer fails the next request."""
        return self.session.closed or (self._poll is not None and bool(self._poll.poll(0)))

    def has_expired(self) -> bool:
        return time.monotonic() - self.idle_since > self._keepalive_expiry

    async def aclose(self) -> None:
        # Aborting TLS rather than waiting for close_notify: a peer that never answers it would hold the caller.
        connector = self.session.connector
        if connector is not None:
            await connector.close(abort_ssl=True)
        await self.session.close()


class PinnedPool:
    """Kept-alive HTTP/1.1 connections that connect only to pinned addresses, with one timeout for each attempt
    (waiting for a free connection, connecting, sending and reading the answer). It never follows redirects.

    At most `max_connections` are open, in use or idle. A request takes the most recently used idle connection
    to its (scheme, host, port), or opens one; one idle past `keepalive_expiry` is closed instead of used. When
    the limit is reached, the least recently used idle connection of the host with the most of them is closed to
    make room.
    """

    def __init__(self, *, timeout: float, max_connections: int, keepalive_expiry: float = 30) -> None:
        self.timeout = timeout
        self._ssl_context = httpx.create_ssl_context(trust_env=False)  # certifi's authorities, as httpx trusts
        self._ssl_context.set_alpn_protocols(["http/1.1"])
        self._keepalive_expiry = keepalive_expiry
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)  # one per request using a connection
        # Idle connections by (scheme, host, port), most recently used last.
        self._idle: dict[tuple[str, str, int], list[KeptConnection]] = {}
        self._idle_count = 0
        self._in_use = 0
        self._next_sweep = time.monotonic() + keepalive_expiry
        # Closes under way. Closing waits a turn or two of the event loop for the socket to close, which is no
        # business of the attempt that decided it: done here, a cancelled attempt would leave connections it had
        # taken out of the pool open, and a slow loop would run an answered attempt past its deadline.
        self._closing: set[asyncio.Task[None]] = set()

    def _close_soon(self, connection: KeptConnection) -> None:
        closing = asyncio.ensure_future(connection.aclose())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> Answer:
        """POST `content` to `url` and read the answer (its body, up to `ANSWER_BYTES_READ`, is read and dropped,
        so the connection can be reused). Connects only to an address pinned for the URL's (host, port); raises
        a `DeliveryError`."""
        endpoint = url_guard.endpoint(url)
        if (endpoint.host, endpoint.port) not in (_pinned.get() or {}):
            raise ConnectError(f"no checked address for {endpoint.host}:{endpoint.port}; not connecting")
        # One deadline for the whole attempt (a free connection, connecting, sending, the answer), not one per
        # read: a receiver dripping its answer can't hold an attempt past its lease and see it sent twice.
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(endpoint, content, headers)
        except TimeoutError:
            raise Timeout(f"no complete answer within {self.timeout} s") from None
        except DeliveryError:
            raise
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ConnectError(f"certificate not trusted: {exc.certificate_error}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(str(exc.os_error) or type(exc.os_error).__name__) from exc
        except (aiohttp.ClientError, OSError) as exc:  # the connection broke, or the answer was not HTTP
            raise DeliveryError(str(exc) or type(exc).__name__) from exc

    async def _exchange(self, endpoint: url_guard.Endpoint, content: bytes, headers: dict[str, str]) -> Answer:
        await self._slots.acquire()
        try:
            key = (endpoint.url.scheme, endpoint.host, endpoint.port)
            connection = await self._take(key)
            self._in_use += 1
            try:
                async with connection.session.post(
                    endpoint.url,
                    data=content,
                    headers={**endpoint.headers, **_COMMON_HEADERS, **headers},
                    allow_redirects=False,
                ) as response:
                    received = 0
                    while chunk := await response.content.readany():
                        received += len(chunk)
                        if received > ANSWER_BYTES_READ:
                            response.close()  # an answer closed unread closes its connection: it is not reused
                            break
                    return Answer(response.status, list(response.raw_headers))
            finally:
                self._in_use -= 1
                self._put_back(key, connection)
        finally:
            self._slots.release()

    async def _take(self, key: tuple[str, str, int]) -> KeptConnection:
        idle = self._idle.get(key, [])
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if not (connection.is_closed() or connection.has_expired()):
                return connection
            self._close_soon(connection)
        # A connection still closing counts too: its socket is open until then. The semaphore leaves this request
        # a place, so at the limit something is idle or closing.
        while self._in_use + self._idle_count + len(self._closing) >= self._max_connections:
            if self._idle_count:
                self._close_one_idle()
            await asyncio.wait(set(self._closing), return_when=asyncio.FIRST_COMPLETED)
        return KeptConnection(self._ssl_context, self._keepalive_expiry)

    def _put_back(self, key: tuple[str, str, int], connection: KeptConnection) -> None:
        if connection.is_closed():  # the answer closed it, or the receiver did (or sent more than one answer)
            self._close_soon(connection)
            return
        connection.idle_since = time.monotonic()
        self._idle.setdefault(key, []).append(connection)
        self._idle_count += 1
        if time.monotonic() >= self._next_sweep:  # idle connections of hosts no longer posted to
            self._next_sweep = time.monotonic() + self._keepalive_expiry
            for host, connections in list(self._idle.items()):
                fresh = [c for c in connections if not (c.is_closed() or c.has_expired())]
                for stale in connections:
                    if stale not in fresh:
                        self._close_soon(stale)
                self._idle_count -= len(connections) - len(fresh)
                connections[:] = fresh
                if not fresh:
                    del self._idle[host]

    def _close_one_idle(self) -> None:
        """Close the least recently used idle connection of the host with the most of them."""
        connections = max(self._idle.values(), key=len)
        self._idle_count -= 1
        self._close_soon(connections.pop(0))

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                self._close_soon(connection)
        self._idle.clear()
        self._idle_count = 0
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


@dataclass(frozen=True)
class Answer:
    """The receiver's answer: its status and headers (as received)."""

    status_code: int
    headers: list[tuple[bytes, bytes]]

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None


async def post(
    pool: PinnedPool,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    allow_private: bool,
    resolver: url_guard.Resolver | None = None,
) -> Answer:
    """Resolve and check the URL's host (once), then post to the address that passed. Raises ForbiddenTarget,
    or a `DeliveryError`."""
    target = await url_guard.resolve_target(url, allow_private=allow_private, resolver=resolver)
    token = _pinned.set({**(_pinned.get() or {}), (target.host, target.port): target.address})
    try:
        return await pool.post(url, content=content, headers=headers)
    finally:
        _pinned.reset(token)
