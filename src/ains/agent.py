"""The agent runtime: a decorator-based worker that registers, claims, runs handlers and reports.

    from ains.agent import Agent, NonRetryable, RetryAfter, current_task

    agent = Agent("http://127.0.0.1:8000", "agent_1", "agent_1.key", ["data:v1"], max_concurrency=5)

    @agent.handler("data:v1")
    async def analyse(input_data: dict) -> dict:
        return {"words": len(input_data["text"].split())}

    agent.run()   # or `ains agent run module:agent`

It registers on its first run (making the key file if there is none) and on later
runs re-issues its key with a signature; the key lives only in memory and is never
logged. It long-polls claims up to its free concurrency, starts each task with the
claimed attempt number (fencing), runs the handler (async, or sync in a thread),
then completes or fails the task: `NonRetryable` fails it for good, `RetryAfter(s)`
asks for a retry in `s` seconds, any other exception asks for an ordinary retry.
Heartbeats run in the background; a task cancelled on the server cancels its async
handler, while a sync handler sees `current_task().cancelled`. SIGTERM or SIGINT
stops claiming, lets running handlers finish within `grace_seconds`, fails the
rest as retryable so another agent takes them, and returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ains.identity import Identity

log = logging.getLogger("ains.agent")

Handler = Callable[[dict[str, Any]], Any]


class NonRetryable(Exception):
    """Raise from a handler to fail the task without a retry."""


class RetryAfter(Exception):
    """Raise from a handler to ask for a retry after `seconds` (still within the server's cap)."""

    def __init__(self, seconds: float, message: str | None = None) -> None:
        super().__init__(message or f"retry after {seconds} s")
        self.seconds = seconds


@dataclass
class TaskContext:
    task_id: str
    attempt: int
    capability: str
    input_data: dict[str, Any]
    cancelled: bool = False  # set when the server reports the task cancelled
    task: dict[str, Any] = field(default_factory=dict, repr=False)


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("ains_current_task")


def current_task() -> TaskContext:
    """The task the calling handler is running (also inside sync handlers' threads)."""
    return _current.get()


@dataclass
class _Running:
    job: asyncio.Task
    context: TaskContext


class Agent:
    def __init__(
        self,
        server_url: str,
        agent_id: str,
        key_file: str | Path,
        capabilities: list[str],
        max_concurrency: int = 5,
        *,
        display_name: str | None = None,
        poll_wait_seconds: float = 10.0,
        heartbeat_seconds: float | None = None,
        grace_seconds: float = 30.0,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.agent_id = agent_id
        self.key_file = Path(key_file)
        self.capabilities = list(dict.fromkeys(capabilities))
        self.max_concurrency = max_concurrency
        self.display_name = display_name
        self.poll_wait_seconds = poll_wait_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.grace_seconds = grace_seconds
        self._handlers: dict[str, Handler] = {}
        self._running: dict[str, _Running] = {}
        self._http: httpx.AsyncClient | None = None
        self._stopping: asyncio.Event | None = None
        self._slot_freed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.completed = 0
        self.failed = 0

    def handler(self, capability: str) -> Callable[[Handler], Handler]:
        """Register a function (plain or async) that takes `input_data` and returns `result_data`."""

        def register(function: Handler) -> Handler:
            self._handlers[capability] = function
            if capability not in self.capabilities:
                self.capabilities.append(capability)
            return function

        return register

    # -- running -------------------------------------------------------------

    def run(self) -> None:
        asyncio.run(self.run_async())

    def stop(self) -> None:
        """Begin a graceful stop (safe to call from another thread or a signal handler)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def run_async(self, *, install_signal_handlers: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        if install_signal_handlers:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(signum, self._stopping.set)
        self._http = httpx.AsyncClient(base_url=self.server_url, timeout=self.poll_wait_seconds + 30)
        try:
            interval = await self._connect()
            heartbeats = asyncio.create_task(self._heartbeats(self.heartbeat_seconds or interval))
            try:
                await self._claim_loop()
                await self._drain()
            finally:
                heartbeats.cancel()
                await asyncio.gather(heartbeats, return_exceptions=True)
        finally:
            if install_signal_handlers:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(signum)
            await self._http.aclose()
            log.info("agent stopped", extra={"agent_id": self.agent_id})

    async def _connect(self) -> float:
        """Register, or re-issue the key of an agent already registered; answers the heartbeat interval."""
        assert self._http is not None
        if self.key_file.exists():
            identity = Identity.load(self.key_file)
        else:
            identity = Identity.generate()
            identity.save(self.key_file)
        existing = await self._http.get(f"/ains/agents/{self.agent_id}")
        profile = {"capabilities": self.capabilities, "max_concurrency": self.max_concurrency}
        if self.display_name:
            profile["display_name"] = self.display_name
        if existing.status_code == 404:
            response = await self._http.post("/ains/agents", json=identity.registration(self.agent_id) | profile)
            self._raise_for(response, "register")
            log.info("agent registered", extra={"agent_id": self.agent_id})
        else:
            self._raise_for(existing, "look up")
            response = await self._http.post(
                f"/ains/agents/{self.agent_id}/token", json=identity.token_request(self.agent_id)
            )
            self._raise_for(response, "re-issue the key of")
            log.info("agent key re-issued", extra={"agent_id": self.agent_id})
        self._http.headers["Authorization"] = f"Bearer {response.json()['api_key']}"
        if existing.status_code != 404:
            self._raise_for(await self._http.patch(f"/ains/agents/{self.agent_id}", json=profile), "update")
        beat = await self._http.post(f"/ains/agents/{self.agent_id}/heartbeat", json={})
        self._raise_for(beat, "send a heartbeat for")
        return float(beat.json()["next_heartbeat_in"])

    def _raise_for(self, response: httpx.Response, action: str) -> None:
        if response.status_code >= 400:
            raise RuntimeError(f"could not {action} agent {self.agent_id}: {response.status_code} {response.text}")

    async def _heartbeats(self, interval: float) -> None:
        assert self._http is not None
        while True:
            await asyncio.sleep(interval)
            try:
                response = await self._http.post(f"/ains/agents/{self.agent_id}/heartbeat", json={})
                for task_id in response.json().get("cancelled_task_ids", []):
                    self._cancelled_on_server(task_id)
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("heartbeat failed", extra={"agent_id": self.agent_id, "error": str(exc)})

    def _cancelled_on_server(self, task_id: str) -> None:
        running = self._running.get(task_id)
        if running is None:
            return
        running.context.cancelled = True
        handler = self._handlers.get(running.context.capability)
        if handler is not None and inspect.iscoroutinefunction(handler):
            running.job.cancel()
        log.info("task cancelled on the server", extra={"task_id": task_id})

    async def _claim_loop(self) -> None:
        assert self._http is not None and self._stopping is not None and self._slot_freed is not None
        stop = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                free = self.max_concurrency - len(self._running)
                if free <= 0:
                    self._slot_freed.clear()
                    await asyncio.wait(
                        [stop, asyncio.create_task(self._slot_freed.wait())], return_when="FIRST_COMPLETED"
                    )
                    continue
                claim = asyncio.create_task(
                    self._http.post(
                        f"/ains/agents/{self.agent_id}/tasks/claim",
                        json={"max_tasks": free, "wait_seconds": self.poll_wait_seconds},
                    )
                )
                await asyncio.wait([claim, stop], return_when="FIRST_COMPLETED")
                if not claim.done():
                    # Stopping: tasks assigned by this abandoned claim go back to the queue when their lease ends.
                    claim.cancel()
                    break
                try:
                    response = claim.result()
                    self._raise_for(response, "claim for")
                except (httpx.HTTPError, RuntimeError) as exc:
                    log.warning("claim failed", extra={"agent_id": self.agent_id, "error": str(exc)})
                    await asyncio.sleep(1)
                    continue
                for task in response.json()["tasks"]:
                    context = TaskContext(
                        task["task_id"], task["attempt"], task["capability_required"], task["input_data"], task=task
                    )
                    job = asyncio.create_task(self._run_task(context))
                    self._running[context.task_id] = _Running(job, context)
        finally:
            stop.cancel()

    async def _run_task(self, context: TaskContext) -> None:
        assert self._slot_freed is not None
        try:
            started = await self._report(context, "start", {})
            if not started:
                return
            handler = self._handlers.get(context.capability)
            if handler is None:
                await self._report(
                    context, "fail", {"error_message": f"no handler for {context.capability}", "retryable": False}
                )
                return
            _current.set(context)
            try:
                if inspect.iscoroutinefunction(handler):
                    result = await handler(context.input_data)
                else:
                    result = await asyncio.to_thread(handler, context.input_data)
            except asyncio.CancelledError:
                if context.cancelled:
                    return  # cancelled on the server: nothing to report
                await self._report(context, "fail", {"error_message": "agent shut down before finishing"})
                return
            except NonRetryable as exc:
                await self._fail(context, {"error_message": _describe(exc), "retryable": False})
                return
            except RetryAfter as exc:
                await self._fail(context, {"error_message": _describe(exc), "retry_after_seconds": exc.seconds})
                return
            except Exception as exc:  # any other failure of the handler asks for a retry
                await self._fail(context, {"error_message": _describe(exc)})
                return
            if context.cancelled:
                return
            result_data = result if isinstance(result, dict) else {"result": result}
            if await self._report(context, "complete", {"result_data": result_data}):
                self.completed += 1
        finally:
            self._running.pop(context.task_id, None)
            self._slot_freed.set()

    async def _fail(self, context: TaskContext, body: dict[str, Any]) -> None:
        if context.cancelled:
            return
        if await self._report(context, "fail", body):
            self.failed += 1

    async def _report(self, context: TaskContext, action: str, body: dict[str, Any]) -> bool:
        """Send start/complete/fail with the claimed attempt; False when the server refused it (409/404)."""
        assert self._http is not None
        payload = body | {"attempt": context.attempt}
        for attempt in range(5):
            try:
                response = await self._http.post(f"/ains/tasks/{context.task_id}/{action}", json=payload)
            except httpx.TransportError as exc:
                log.warning("report failed, retrying", extra={"task_id": context.task_id, "error": str(exc)})
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            if response.status_code in (404, 409):
                # Fencing: this attempt was given up (lease, timeout, cancellation); a newer one counts.
                log.info(
                    "server refused a stale report",
                    extra={"task_id": context.task_id, "action": action, "detail": response.text[:300]},
                )
                return False
            self._raise_for(response, f"{action} a task of")
            return True
        return False

    async def _drain(self) -> None:
        if not self._running:
            return
        log.info("draining", extra={"agent_id": self.agent_id, "running": len(self._running)})
        jobs = [running.job for running in self._running.values()]
        _done, pending = await asyncio.wait(jobs, timeout=self.grace_seconds)
        for running in list(self._running.values()):
            if running.job in pending:
                running.job.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
