"""Connections to the checked address: an HTTP connection pool whose connections go where the SSRF guard said.

Each attempt resolves its URL's host once and checks every address (`url_guard.resolve_target`), then posts with
that address pinned for its (host, port). The pool's network backend opens a new connection to the pinned
address, never resolving the name itself, so a second, different DNS answer can't redirect it. The URL is left
as it is: the `Host` header, and for https the TLS server name and the certificate check, stay the URL's host, and
the pool keeps connections alive per (scheme, host, port) as before. A connection kept alive from an earlier
attempt was opened to an address checked then. A connection for which no address was pinned is refused.

HTTP is httpcore's, used directly: a delivery needs one POST and the answer's status and headers, none of httpx's
client layer (redirects, cookies, auth, decoding), and never follows a redirect. `PinnedPool` keeps the
connections. No proxy from the environment is used: a proxy would make the connection somewhere other than the
checked address.
"""

from __future__ import annotations

import asyncio
import contextvars
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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

# How much of an answer's body is read (and dropped) so its connection can be reused; past this the connection
# is closed instead: a receiver that answers with megabytes costs the dispatcher nothing more.
ANSWER_BYTES_READ = 64 * 1024

# What every delivery sends besides its own headers (Host, Content-Length and the signature headers).
_COMMON_HEADERS = [(b"Accept", b"*/*"), (b"User-Agent", b"ains-webhooks")]

# Whatever a transport error from the HTTP stack is (a timeout is also one of these).
HTTPError = (
    httpcore.NetworkError,
    httpcore.TimeoutException,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
)


class PinnedStream(httpcore.AsyncNetworkStream):
    """A connection's stream, with its socket looked up once.

    Before an idle connection is used again, httpcore asks whether its socket is readable (the receiver closed
    it); anyio's stream answers by building its table of attributes, `getpeername()` included, on every call.
    Here the answer is one `poll` on the socket kept from the start.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream, sock: socket.socket | None) -> None:
        self._inner = inner
        self._sock = sock
        self._poll: select.poll | None = None
        if sock is not None and hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(sock, select.POLLIN)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return PinnedStream(await self._inner.start_tls(ssl_context, server_hostname, timeout), self._sock)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # As httpcore answers it: a closed socket, or one with something to read while idle, is done with.
            if self._sock is None or self._poll is None or self._sock.fileno() == -1:
                return self._inner.get_extra_info(info)
            return bool(self._poll.poll(0))
        if info == "socket":
            return self._sock
        return self._inner.get_extra_info(info)


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
        stream = await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return PinnedStream(stream, stream.get_extra_info("socket"))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhook deliveries never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedPool:
    """Kept-alive HTTP/1.1 connections (httpcore's) that connect only to pinned addresses, with one timeout for
    each of connecting, writing, reading and waiting for a free connection. It never follows redirects.

    At most `max_connections` are open, in use or idle. A request takes the most recently used idle connection
    to its (scheme, host, port), or opens one; a connection the receiver closed, or idle past
    `keepalive_expiry`, is closed instead of used. Once its answer is read a connection is idle again, unless it
    closed (the receiver asked, or the request failed midway). httpcore's own pool would do the same, but it looks
    over every connection, idle ones against all the others, twice per request: with a few dozen kept alive that
    cost more than the request.
    """

    def __init__(self, *, timeout: float, max_connections: int, keepalive_expiry: float = 30) -> None:
        self.timeout = timeout
        self._extensions = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)}
        self._ssl_context = httpx.create_ssl_context(trust_env=False)
        self._backend = PinnedBackend(httpcore.AnyIOBackend())
        self._keepalive_expiry = keepalive_expiry
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)  # one per request using a connection
        # Idle connections by (scheme, host, port), most recently used last.
        self._idle: dict[tuple[bytes, bytes, int], list[httpcore.AsyncHTTPConnection]] = {}
        self._idle_count = 0
        self._in_use = 0
        self._next_sweep = time.monotonic() + keepalive_expiry

    async def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> Answer:
        """POST `content` to `url` and read the answer (its body, up to `ANSWER_BYTES_READ`, is read and dropped,
        so the connection can be reused). Connects only to an address pinned for the URL's (host, port); raises
        one of `HTTPError`."""
        endpoint = url_guard.endpoint(url)
        request = httpcore.Request(
            b"POST",
            endpoint.url,
            headers=[
                (b"Host", endpoint.host_header),
                *_COMMON_HEADERS,
                *endpoint.credentials,
                (b"Content-Length", str(len(content)).encode()),
                *((name.encode(), value.encode()) for name, value in headers.items()),
            ],
            content=content,
            extensions=self._extensions,
        )
        # One deadline for the whole attempt (a free connection, connecting, sending, the answer), not one per
        # read: a receiver dripping its answer can't hold an attempt past its lease and see it sent twice.
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(request)
        except TimeoutError:
            raise httpcore.ReadTimeout(f"no complete answer within {self.timeout} s") from None

    async def _exchange(self, request: httpcore.Request) -> Answer:
        await self._slots.acquire()
        try:
            origin = request.url.origin
            key = (origin.scheme, origin.host, origin.port)
            connection = await self._take(key, origin)
            self._in_use += 1
            try:
                response = await connection.handle_async_request(request)
                try:
                    received = 0
                    async for chunk in response.aiter_stream():
                        received += len(chunk)
                        if received > ANSWER_BYTES_READ:
                            break  # an answer closed unread closes its connection: it is not reused
                finally:
                    await response.aclose()
            finally:
                self._in_use -= 1
                await self._put_back(key, connection)
            return Answer(response.status, response.headers)
        finally:
            self._slots.release()

    async def _take(self, key: tuple[bytes, bytes, int], origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        idle = self._idle.get(key, [])
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if not (connection.is_closed() or connection.has_expired()):
                return connection
            await connection.aclose()
        while self._idle_count and self._in_use + self._idle_count >= self._max_connections:
            await self._close_one_idle()
        return httpcore.AsyncHTTPConnection(
            origin=origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            network_backend=self._backend,
        )

    async def _put_back(self, key: tuple[bytes, bytes, int], connection: httpcore.AsyncHTTPConnection) -> None:
        # A failed connect leaves a connection closed (and, to httpcore, "idle"): ask is_closed first.
        if connection.is_closed():
            return
        if not connection.is_idle():  # not expected: httpcore closes a connection whose request broke off
            await connection.aclose()
            return
        self._idle.setdefault(key, []).append(connection)
        self._idle_count += 1
        if time.monotonic() >= self._next_sweep:  # idle connections of hosts no longer posted to
            self._next_sweep = time.monotonic() + self._keepalive_expiry
            # Taken out of the pool first, closed after: closing awaits, and meanwhile other requests take and
            # close idle connections of their own.
            stale: list[httpcore.AsyncHTTPConnection] = []
            for host, connections in list(self._idle.items()):
                fresh = [c for c in connections if not (c.is_closed() or c.has_expired())]
                stale.extend(c for c in connections if c not in fresh)
                self._idle_count -= len(connections) - len(fresh)
                connections[:] = fresh
                if not fresh:
                    del self._idle[host]
            for connection in stale:
                await connection.aclose()

    async def _close_one_idle(self) -> None:
        """Close the least recently used idle connection of the host with the most of them."""
        connections = max(self._idle.values(), key=len)
        self._idle_count -= 1
        await connections.pop(0).aclose()

    async def aclose(self) -> None:
        idle = [connection for connections in self._idle.values() for connection in connections]
        self._idle.clear()
        self._idle_count = 0
        for connection in idle:
            await connection.aclose()


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
    or one of `HTTPError`."""
    target = await url_guard.resolve_target(url, allow_private=allow_private, resolver=resolver)
    token = _pinned.set({**(_pinned.get() or {}), (target.host, target.port): target.address})
    try:
        return await pool.post(url, content=content, headers=headers)
    finally:
        _pinned.reset(token)
