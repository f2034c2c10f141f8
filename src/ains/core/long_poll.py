"""A long poll's wait (a claim or a heartbeat with `wait_seconds`): it ends at a wake-up, when its time is up,
when the server begins to stop, or when the caller has gone away.

Stopping matters because a server that is told to stop lets its open requests finish first: without this a
waiting claim or heartbeat would hold the stop up for the rest of its wait. A caller that went away matters
because a claim woken for it would hand tasks to nobody (they would sit ASSIGNED until their lease ran out).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request


class LongPoll:
    def __init__(self, stopping: asyncio.Event, wait_seconds: float, request: Request | None = None) -> None:
        self._stopping = stopping
        self._deadline = time.monotonic() + wait_seconds
        self._request = request
        self._gone = asyncio.Event()
        self._watcher: asyncio.Task | None = None

    async def __aenter__(self) -> LongPoll:
        if self._request is not None:
            self._watcher = asyncio.create_task(self._watch_caller(self._request))
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def _watch_caller(self, request: Request) -> None:
        # The body has been read, so the next message from the server is the disconnect, whenever it comes.
        while (await request.receive())["type"] != "http.disconnect":
            pass
        self._gone.set()

    def remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    @property
    def over(self) -> bool:
        return self.remaining() <= 0 or self._stopping.is_set() or self._gone.is_set()

    @property
    def caller_gone(self) -> bool:
        return self._gone.is_set()

    async def wait(self, woken: asyncio.Event, at_most: float) -> None:
        """Until `woken` is set, the poll is over, or `at_most` seconds (the fallback look-again) have passed."""
        if self.over or woken.is_set():
            return
        waits = [asyncio.ensure_future(e.wait()) for e in (woken, self._stopping, self._gone)]
        try:
            await asyncio.wait(waits, timeout=min(self.remaining(), at_most), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


def stop_long_polls_on_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """Call `stop` (in the event loop) as soon as SIGTERM or SIGINT arrives, before the server's own handling.

    The server (uvicorn) installs its handlers before the app starts; each is wrapped, and put back by the
    function returned. Nothing is installed outside the main thread, nor over a default or ignored handler.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[int, tuple[Any, Any]] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def on_signal(number: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
            loop.call_soon_threadsafe(stop)
            previous(number, frame)

        signal.signal(signum, on_signal)
        installed[signum] = (on_signal, previous)

    def restore() -> None:
        for signum, (ours, previous) in installed.items():
            if signal.getsignal(signum) is ours:
                signal.signal(signum, previous)

    return restore
