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


class SocketStream(httpcore.AsyncNetworkStream):
    """A connection's stream on asyncio's own streams (uvloop's, in the server).

    httpcore's anyio backend wraps every read and write in a cancel scope of its own, which cost the dispatcher
    more than the bytes it moved (py-spy: 14 % of a drain in anyio and `current_task`). Here a read or a write
    is the stream call alone, and no per-operation timeout is applied: the one deadline of each attempt
    (`PinnedPool.post`) bounds all of them.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._sock = writer.get_extra_info("socket")
        self._poll: select.poll | None = None
        if self._sock is not None and hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(self._sock, select.POLLIN)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return await self._reader.read(max_bytes)
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            await self._writer.drain()
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        # Not awaiting the close: a TLS peer that never answers close_notify would hold the caller for long.
        self._writer.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError:
            self._writer.close()
            raise httpcore.ConnectTimeout(f"no TLS handshake within {timeout} s") from None
        except OSError as exc:  # ssl.SSLError (a certificate refused, say) is one
            self._writer.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # As httpcore asks it of an idle connection: closed, or with something to read, means done with.
            if self._sock is None or self._poll is None or self._sock.fileno() == -1:
                return True
            if self._writer.is_closing() or self._reader.at_eof():  # the transport already read the close
                return True
            return bool(self._poll.poll(0))
        if info == "socket":
            return self._sock
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        return None


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections to the address pinned for (host, port), never to whatever the name resolves to."""

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
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    address, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection to {address}:{port} within {timeout} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return SocketStream(reader, writer)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhook deliveries never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Uncontended:
    """The lock of a connection that one request uses at a time (the pool sees to it): it never has to wait."""

    async def __aenter__(self) -> _Uncontended:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None


class KeptConnection(httpcore.AsyncHTTP11Connection):
    """An HTTP/1.1 connection of the pool, already connected (to the pinned address, by the pool).

    httpcore guards a connection's state with an anyio lock, which gives up the event loop on every acquire
    even when nobody else holds it: two turns of the loop per request, and the connection wrapper's own lock a
    third. The pool never lets two requests share a connection, so here the state needs no lock, and a delivery
    gives up the loop only to wait for the network. Inside a busy server each turn waits behind the API's
    requests (a send under the end-to-end load took ~66 ms, against 6 ms once the load was over).
    """

    def __init__(self, origin: httpcore.Origin, stream: httpcore.AsyncNetworkStream, keepalive_expiry: float) -> None:
        super().__init__(origin=origin, stream=stream, keepalive_expiry=keepalive_expiry)
        self._state_lock = _Uncontended()  # type: ignore[assignment]


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
        self._ssl_context.set_alpn_protocols(["http/1.1"])
        self._backend = PinnedBackend()
        self._keepalive_expiry = keepalive_expiry
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)  # one per request using a connection
        # Idle connections by (scheme, host, port), most recently used last.
        self._idle: dict[tuple[bytes, bytes, int], list[KeptConnection]] = {}
        self._idle_count = 0
        self._in_use = 0
        self._connecting = 0
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

    async def _take(self, key: tuple[bytes, bytes, int], origin: httpcore.Origin) -> KeptConnection:
        idle = self._idle.get(key, [])
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if not (connection.is_closed() or connection.has_expired()):
                return connection
            await connection.aclose()
        while self._idle_count and self._in_use + self._connecting + self._idle_count >= self._max_connections:
            await self._close_one_idle()
        host = origin.host.decode("ascii")
        self._connecting += 1  # open already, as far as the limit is concerned
        try:
            stream = await self._backend.connect_tcp(host, origin.port, timeout=self.timeout)
            if origin.scheme == b"https":
                # The URL's host names the server and is checked against its certificate (a failure closes the
                # socket).
                stream = await stream.start_tls(self._ssl_context, server_hostname=host, timeout=self.timeout)
        finally:
            self._connecting -= 1
        return KeptConnection(origin, stream, self._keepalive_expiry)

    async def _put_back(self, key: tuple[bytes, bytes, int], connection: KeptConnection) -> None:
        # A request that broke off midway closed its connection: it is not kept.
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
            stale: list[KeptConnection] = []
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
