"""The link between processes on one PostgreSQL: one LISTEN connection per process, also used to publish.

Each process keeps one asyncpg connection that LISTENs on `ains_wakeup`.
What a process's commits announce (`ains.core.signals`) is published on that
connection right after the commit, coalesced: everything announced while the
previous NOTIFY was on its way goes out in the next one, so a busy process sends
a few notifications a second instead of one per transaction (NOTIFY serialises
the commits of the transactions that send it). A crash between a commit and its
publication loses only a wake-up, which the receivers' fallback polls cover; key
changes, which must never be lost, are sent inside their own transaction instead.

The connection is checked every `wakeup_fallback_seconds`. While it is down the
process is marked disconnected (the key and in-process caches are bypassed), and
after every (re)connect everyone in the process looks again, since anything may
have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from typing import Any

from sqlalchemy.engine import make_url

from ains.core.signals import EVERYTHING, Announcement, Wakeups

log = logging.getLogger("ains.wakeups")

CHANNEL = "ains_wakeup"
# How the listening connections show in pg_stat_activity.
APPLICATION_NAME = "ains-wakeup-listener"
# NOTIFY payloads must stay under 8,000 bytes.
MAX_PAYLOAD_BYTES = 7_000
# Past this many announcements waiting to go out, send "everything may have changed" instead.
MAX_PENDING = 10_000
MAX_BACKOFF_SECONDS = 5.0


def asyncpg_dsn(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    return {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username,
        "password": parsed.password,
        "database": parsed.database,
    }


def encode(origin: str, announcements: list[Announcement]) -> list[str]:
    """Payloads of at most MAX_PAYLOAD_BYTES, each `[origin, [[kind, subject, value], …]]`."""
    payloads: list[str] = []
    batch: list[list[str]] = []
    size = 0
    for kind, subject, value in announcements:
        item = [kind, subject, value]
        item_size = len(json.dumps(item).encode())
        if item_size > MAX_PAYLOAD_BYTES - 100:
            # A single oversized item (a huge list of cache keys): say "everything" for its kind instead.
            item, item_size = [kind, EVERYTHING, ""], 20
        if batch and size + item_size > MAX_PAYLOAD_BYTES - 100:
            payloads.append(json.dumps([origin, batch]))
            batch, size = [], 0
        batch.append(item)
        size += item_size + 1
    if batch:
        payloads.append(json.dumps([origin, batch]))
    return payloads


def decode(payload: str) -> tuple[str, list[Announcement]]:
    origin, items = json.loads(payload)
    return origin, [(str(kind), str(subject), str(value)) for kind, subject, value in items]


class WakeupListener:
    def __init__(self, url: str, wakeups: Wakeups, *, check_seconds: float) -> None:
        self._dsn = asyncpg_dsn(url)
        self._wakeups = wakeups
        self._check_seconds = check_seconds
        self.origin = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._pending: list[Announcement] = []
        self._overflowed = False
        self._has_pending = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._connection: Any = None

    def start(self) -> None:
        self._wakeups.connected = False
        self._wakeups.publish = self._queue
        self._task = asyncio.create_task(self._run(), name="wakeup-listener")

    async def stop(self) -> None:
        self._wakeups.publish = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()

    def _queue(self, announcements: list[Announcement]) -> None:
        if len(self._pending) + len(announcements) > MAX_PENDING:
            self._pending.clear()
            self._overflowed = True
        else:
            self._pending.extend(announcements)
        self._has_pending.set()

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            origin, announcements = decode(payload)
        except (ValueError, TypeError):
            log.warning("ignored a malformed wake-up notification")
            return
        if origin == self.origin:
            return  # this process delivered its own announcements at commit
        if announcements == [("missed", EVERYTHING, "")]:
            self._wakeups.missed_some()
            return
        self._wakeups.deliver(announcements)

    def _on_termination(self, _connection: Any) -> None:
        # The server ended the connection: stop trusting what this process caches now, not at the next check.
        self._wakeups.connected = False
        self._has_pending.set()

    async def _run(self) -> None:
        import asyncpg

        backoff = 0.1
        failing = False
        while True:
            try:
                self._connection = await asyncpg.connect(
                    **self._dsn,
                    timeout=self._check_seconds + 5,
                    server_settings={"application_name": APPLICATION_NAME},
                )
                await self._connection.add_listener(CHANNEL, self._on_notify)
                self._connection.add_termination_listener(self._on_termination)
                self._wakeups.connected = True
                # Whatever happened before this connection listened may have been missed.
                self._wakeups.missed_some()
                if failing:
                    log.warning("wake-up link to the other processes restored")
                failing, backoff = False, 0.1
                await self._serve()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection refused, cut, timed out: reconnect with backoff
                self._wakeups.connected = False
                if not failing:
                    log.warning(
                        "wake-up link to the other processes lost; retrying",
                        extra={"error": f"{type(exc).__name__}: {exc}"},
                    )
                failing = True
                await self._close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _serve(self) -> None:
        """Publish what this process announces; between publications, check that the link still works."""
        connection = self._connection
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that arrives as the
            # event is set, and the server's shutdown then waits on this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_seconds):
                    await self._has_pending.wait()
            self._has_pending.clear()
            if self._overflowed or self._pending:
                announcements, self._pending = self._pending, []
                payloads = (
                    [json.dumps([self.origin, [["missed", EVERYTHING, ""]]])]
                    if self._overflowed
                    else encode(self.origin, announcements)
                )
                try:
                    await connection.execute(
                        f"SELECT pg_notify('{CHANNEL}', p) FROM unnest($1::text[]) AS p",
                        payloads,
                        timeout=self._check_seconds + 5,
                    )
                except BaseException:
                    self._pending[:0] = announcements  # sent after the reconnect
                    raise
                self._overflowed = False
            else:
                await connection.fetchval("SELECT 1", timeout=self._check_seconds + 5)
            if connection.is_closed():
                raise ConnectionError("the listening connection closed")

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await connection.close()
            if not connection.is_closed():
                connection.terminate()


async def notify_in_transaction(session: Any, origin: str, announcements: list[Announcement]) -> None:
    """Send announcements inside the caller's transaction: delivered if, and only if, it commits."""
    from sqlalchemy import text

    for payload in encode(origin, announcements):
        await session.execute(text(f"SELECT pg_notify('{CHANNEL}', :payload)"), {"payload": payload})
