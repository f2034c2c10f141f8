"""The dispatcher's connection pool (pinning.PinnedPool): kept-alive connections are reused, one the receiver
closed is not, no more than `max_connections` are open, the request carries the URL's host and credentials, and an
address literal in a URL is checked at every attempt without being resolved."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import time
from pathlib import Path

import pytest

from ains.webhooks import pinning, url_guard
from ains.webhooks.url_guard import ForbiddenTarget
from tests.webhooks.test_pinning import REFUSED


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 request with a Content-Length body off the stream: its head (the body is read and dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head


class Server:
    """A minimal HTTP/1.1 receiver on 127.0.0.1 that answers 200, counting connections; it can close each
    connection after one answer (without saying so) or hold its answers until `release` is set."""

    def __init__(self, *, close_after_answer: bool = False, body_bytes: int = 0) -> None:
        self.close_after_answer = close_after_answer
        self.body_bytes = body_bytes
        self.body_sent = 0
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests = 0
        self.heads: list[bytes] = []
        self.release = asyncio.Event()
        self.release.set()
        self.closed = asyncio.Event()  # set each time the server closes a connection itself

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await read_request(reader)
                self.requests += 1
                self.heads.append(head)
                await self.release.wait()
                writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {self.body_bytes}\r\n\r\n".encode())
                await writer.drain()
                for _ in range(self.body_bytes // 65536):
                    writer.write(b"x" * 65536)
                    await writer.drain()
                    self.body_sent += 65536
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.closed.set()

    async def stop(self) -> None:
        self.server.close()


@pytest.fixture
async def servers():
    made: list[Server] = []

    async def make(**kwargs) -> tuple[Server, str]:
        server = Server(**kwargs)
        made.append(server)
        return server, await server.start()

    yield make
    for server in made:
        await server.stop()


async def _post(pool: pinning.PinnedPool, url: str) -> pinning.Answer:
    return await pinning.post(pool, url, content=b"{}", headers={}, allow_private=True)


async def _loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


async def _post_named(pool: pinning.PinnedPool, url: str) -> pinning.Answer:
    """A post to a URL naming its host, which resolves to 127.0.0.1."""
    return await pinning.post(pool, url, content=b"{}", headers={}, allow_private=True, resolver=_loopback)


async def _three_posts_on_one_connection(servers) -> None:
    server, url = await servers()
    pool = pinning.PinnedPool(timeout=5, max_connections=4)
    try:
        for _ in range(3):
            assert (await _post(pool, url)).status_code == 200
    finally:
        await pool.aclose()
    assert (server.requests, server.connections) == (3, 1)


async def test_a_kept_alive_connection_is_reused(servers):
    await _three_posts_on_one_connection(servers)


async def test_a_connection_the_receiver_closed_is_not_reused(servers):
    server, url = await servers(close_after_answer=True)
    pool = pinning.PinnedPool(timeout=5, max_connections=4)
    try:
        for _ in range(3):
            server.closed.clear()
            assert (await _post(pool, url)).status_code == 200
            await server.closed.wait()  # closed without a word: only the socket tells
    finally:
        await pool.aclose()
    assert (server.requests, server.connections) == (3, 3)


async def test_a_large_answer_is_not_read_to_its_end_and_its_connection_is_not_reused(servers):
    server, url = await servers(body_bytes=64 * 1024 * 1024)
    pool = pinning.PinnedPool(timeout=10, max_connections=2)
    try:
        for _ in range(2):
            server.closed.clear()
            assert (await _post(pool, url)).status_code == 200
            await asyncio.wait_for(server.closed.wait(), 30)  # the dispatcher hung up on the rest of the answer
    finally:
        await pool.aclose()
    assert (server.requests, server.connections) == (2, 2)
    assert server.body_sent < 2 * 16 * 1024 * 1024  # far from the 128 MiB the two answers held


async def test_no_more_connections_than_the_limit(servers):
    server, url = await servers()
    server.release.clear()
    pool = pinning.PinnedPool(timeout=10, max_connections=2)
    try:
        posts = [asyncio.create_task(_post(pool, url)) for _ in range(5)]
        while server.requests < 2:
            await asyncio.sleep(0.01)
        for _ in range(10):  # the others wait for a connection: the receiver sees no third request
            await asyncio.sleep(0.01)
        assert server.requests == 2 and server.connections == 2
        server.release.set()
        assert [answer.status_code for answer in await asyncio.gather(*posts)] == [200] * 5
    finally:
        await pool.aclose()
    assert server.most_open == 2 and server.connections == 2 and server.requests == 5


async def test_a_connection_still_being_made_counts_against_the_limit(servers, monkeypatch):
    """Two receivers' connections are being made (held back here) while one to a third sits idle: with a limit of
    two, the idle one is closed first, so no more than two are ever open."""
    (first, first_url), (second, second_url), (third, third_url) = [await servers() for _ in range(3)]
    pool = pinning.PinnedPool(timeout=10, max_connections=2)
    gate = asyncio.Event()
    resolve = pinning._RESOLVER.resolve

    async def held_back(host, port, **kwargs):  # just before connecting to a named host
        await gate.wait()
        return await resolve(host, port, **kwargs)

    async def idle_one_closed() -> None:
        while first.open:
            await asyncio.sleep(0.01)

    monkeypatch.setattr(pinning._RESOLVER, "resolve", held_back)
    named = [url.replace("127.0.0.1", name) for url, name in ((second_url, "second.test"), (third_url, "third.test"))]
    posts = []
    try:
        assert (await _post(pool, first_url)).status_code == 200  # an address literal: connected to as it is
        posts = [asyncio.create_task(_post_named(pool, url)) for url in named]
        # The second post's connection is on its way: the third's closes the idle one before opening its own.
        await asyncio.wait_for(idle_one_closed(), timeout=10)
        assert (second.connections, third.connections) == (0, 0)
        gate.set()
        assert [answer.status_code for answer in await asyncio.gather(*posts)] == [200, 200]
    finally:
        gate.set()
        await asyncio.gather(*posts, return_exceptions=True)
        await pool.aclose()
    assert (first.connections, second.connections, third.connections) == (1, 1, 1)


async def test_what_a_delivery_sends_besides_its_own_headers(servers):
    server, url = await servers()
    with_credentials = url.replace("http://", "http://us%40er:p%3Ass@")  # as httpx sent them: Basic, decoded
    pool = pinning.PinnedPool(timeout=5, max_connections=2)
    try:
        await pinning.post(pool, url, content=b"{}", headers={"webhook-id": "evt_1"}, allow_private=True)
        await pinning.post(pool, with_credentials, content=b"{}", headers={}, allow_private=True)
    finally:
        await pool.aclose()
    plain, credentials = (head.decode().lower().split("\r\n") for head in server.heads)
    port = url.split(":")[2].split("/")[0]
    assert plain[0] == "post /hook http/1.1" and f"host: 127.0.0.1:{port}" in plain
    assert "content-length: 2" in plain and "webhook-id: evt_1" in plain
    assert not any(line.startswith("authorization") for line in plain)
    assert "authorization: basic dxnazxi6cdpzcw==" in credentials  # base64 of "us@er:p:ss"


@pytest.mark.parametrize("address", REFUSED)
async def test_an_address_literal_is_checked_at_every_attempt_and_never_resolved(address):
    url = f"http://[{address}]:8080/hook" if ":" in address else f"http://{address}:8080/hook"

    async def no_resolving(host, port):
        raise AssertionError(f"an address literal was resolved: {host}")

    for _ in range(2):  # the URL's parts are cached; the check is not
        with pytest.raises(ForbiddenTarget, match="not globally routable"):
            await url_guard.resolve_target(url, allow_private=False, resolver=no_resolving)
    target = await url_guard.resolve_target(url, allow_private=True, resolver=no_resolving)
    assert ipaddress.ip_address(target.address) == ipaddress.ip_address(address) and target.port == 8080


class _Idle:
    """A stand-in for an idle connection of the pool: expired or not, and closing it yields to other tasks."""

    def __init__(self, expired: bool) -> None:
        self.expired = expired
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed

    def has_expired(self) -> bool:
        return self.expired

    async def aclose(self) -> None:
        await asyncio.sleep(0)  # as closing an aiohttp session does: others run meanwhile
        self.closed = True


async def test_a_sweep_closes_the_expired_idle_connections_and_keeps_the_count():
    pool = pinning.PinnedPool(timeout=5, max_connections=8)
    busy, other = ("http", "busy.example", 80), ("http", "other.example", 80)
    fresh, expired = _Idle(expired=False), [_Idle(expired=True), _Idle(expired=True)]
    pool._idle[busy] = [fresh, *expired]  # most recently used last
    pool._idle_count = 3
    pool._next_sweep = 0.0  # the next connection put back sweeps

    pool._put_back(other, _Idle(expired=False))
    assert pool._idle_count == 2 == sum(len(connections) for connections in pool._idle.values())
    assert await pool._take(busy) is fresh
    await pool.aclose()
    assert all(connection.closed for connection in expired)


def client_sockets(server_port: int) -> int:
    """TCP sockets open in this process whose peer is 127.0.0.1:`server_port`."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            count += int(fields[2].split(":")[1], 16) == server_port and fields[9] in inodes
    return count


async def _stale_connections(servers, count: int) -> tuple[Server, int, pinning.PinnedPool]:
    """`count` idle connections, one per host, that the pool holds as expired while their sockets are still open
    (as aiohttp's own cleanup, lazier than the pool's, leaves them), and a pool whose next put-back sweeps."""
    server, url = await servers()
    port = int(url.split(":")[2].split("/")[0])
    pool = pinning.PinnedPool(timeout=30, max_connections=count + 5)
    hosts = [f"http://h{n}.test:{port}/hook" for n in range(count)]
    await asyncio.gather(*(_post_named(pool, url) for url in hosts))
    for connections in pool._idle.values():
        for connection in connections:
            connection.idle_since -= 3600
    assert client_sockets(port) == count
    pool._next_sweep = 0.0
    return server, port, pool


async def test_an_attempt_cancelled_while_its_put_back_sweeps_leaves_no_connection_open(servers):
    server, port, pool = await _stale_connections(servers, 20)
    post = asyncio.create_task(_post_named(pool, f"http://a.test:{port}/hook"))
    while server.requests < 21:
        await asyncio.sleep(0)
    for _ in range(6):  # the answer is read and its connection put back, which sweeps
        await asyncio.sleep(0)
    post.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await post
    await pool.aclose()
    await asyncio.sleep(0.1)
    assert client_sockets(port) == 0


async def test_closing_other_hosts_connections_does_not_run_an_answered_attempt_past_its_deadline(servers):
    """In a busy event loop (here a task holding it 5 ms a turn) each close takes turns of the loop; a sweep of a
    hundred made an answered delivery a timeout, and the dispatcher would have sent it again."""
    _server, port, pool = await _stale_connections(servers, 100)
    busy = True

    async def hog() -> None:
        while busy:
            time.sleep(0.005)
            await asyncio.sleep(0)

    hogging = asyncio.create_task(hog())
    pool.timeout = 1.0
    try:
        answer = await _post_named(pool, f"http://a.test:{port}/hook")
        assert answer.status_code == 200
    finally:
        busy = False
        await hogging
        await pool.aclose()


async def test_an_answer_dripped_slower_than_the_timeout_ends_the_attempt_at_the_timeout():
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(100):  # each byte well within the timeout, the whole answer far beyond it
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.2)
        writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    pool = pinning.PinnedPool(timeout=1, max_connections=2)
    try:
        with pytest.raises(pinning.Timeout):
            await _post(pool, url)
    finally:
        await pool.aclose()
        server.close()


async def test_every_request_leaves_even_when_an_extra_answer_is_waiting_for_it():
    """A receiver that answers one request twice: the spare answer waits on the connection. The next request must
    still be sent, and not answered from the spare bytes (a review found that holding writes until a read, tried
    to save a system call per delivery, lost it: each later delivery went out one request late)."""
    heads: list[bytes] = []
    connections = 0

    async def answer_twice_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                heads.append(await read_request(reader))
                writer.write(ok + ok if len(heads) == 1 else ok)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_twice_first, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    pool = pinning.PinnedPool(timeout=5, max_connections=4)
    try:
        for n in range(2):
            answer = await pinning.post(pool, url, content=b'{"n": %d}' % n, headers={}, allow_private=True)
            assert answer.status_code == 200
        for _ in range(100):  # the second request, if it was sent, arrives within moments
            if len(heads) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(heads) == 2
        assert connections == 2  # the connection holding bytes nobody asked for was not used again
    finally:
        await pool.aclose()
        server.close()


HOSTILE_ANSWERS = {
    "not HTTP": b"hello there\r\n\r\n",
    "a bad status line": b"HTTP/1.1 abc\r\n\r\n",
    "a header line past the limit": b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n",
    "closed before answering": b"",
    "a body shorter than its length": b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
    "a broken chunk": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n",
}


@pytest.mark.parametrize("answer", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
async def test_a_hostile_answer_fails_the_attempt_as_a_delivery_error_and_leaves_the_pool_usable(servers, answer):
    """What the dispatcher records as the receiver's failure (not an internal error) is a `DeliveryError`."""

    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await read_request(reader)
            writer.write(answer)
            await writer.drain()
        writer.close()

    listener = await asyncio.start_server(hostile, "127.0.0.1", 0)
    sane, sane_url = await servers()
    pool = pinning.PinnedPool(timeout=5, max_connections=1)
    try:
        with pytest.raises(pinning.DeliveryError) as failed:
            await _post(pool, f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/hook")
        assert not isinstance(failed.value, pinning.Timeout)  # told at once, not at the timeout
        assert (await _post(pool, sane_url)).status_code == 200  # the one connection allowed was given back
    finally:
        await pool.aclose()
        listener.close()
    assert sane.requests == 1
