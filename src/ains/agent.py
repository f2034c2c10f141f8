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
A result is made JSON-safe first (Pydantic models, dataclasses, datetimes, UUIDs,
decimals, sets and tuples, at any depth); one that cannot be fails the attempt for good.

It talks to the server through `ains.client.AsyncAINSClient`: the same retry policy
(`Retries`) and the same `AINSError` as the SDK; what it cannot do raises `AINSError`
(`RegistrationError` when the server refuses the agent itself).

Outages: every call is retried with backoff (0.2 s doubling to 5 s) on connection
errors, timeouts and 5xx answers — reports until the attempt's deadline (or, for a
start, the claim's lease), claims and heartbeats for as long as the agent runs, and
the registration at start until the server is up — with one log line when the server
becomes unreachable and one when it is back. The server treats a repeated report for
the same attempt as the same report, so a report whose answer was lost is simply sent
again.

While it holds tasks the runtime keeps one waiting heartbeat open, which the server
answers as soon as one of them is cancelled: an async handler is then cancelled, a
sync one sees `current_task().cancelled` become true, and the slot is free at once.
It enforces each attempt's deadline (`timeout_seconds` from the start) the same way,
without reporting: the server times the attempt out. SIGTERM or SIGINT stops
claiming, lets running handlers finish within `grace_seconds`, fails the rest as
retryable so another agent takes them, and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import datetime as dt
import enum
import inspect
import logging
import math
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PurePath
from typing import Any, TypeVar

import httpx
import pydantic

from ains.client import NOT_SENT, AINSError, AsyncAINSClient, Retries, Try
from ains.identity import Identity
from ains.tasks.schemas import TaskStatus

__all__ = [
    "AINSError",
    "Agent",
    "NonRetryable",
    "RegistrationError",
    "RetryAfter",
    "TaskContext",
    "UnserialisableResult",
    "current_task",
    "result_payload",
    "to_json",
]

log = logging.getLogger("ains.agent")

Handler = Callable[[Any], Any]  # takes input_data (a dict, or the handler's input_model), returns result_data


def _validation_summary(error: pydantic.ValidationError) -> str:
    """'field.sub: message; other: message' — which fields are wrong, without echoing their values."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or '(input)'}: {item['msg']}" for item in error.errors()
    )


BACKOFF_FIRST_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0
# One report (start/complete/fail) waits this long for its answer before it is sent again.
REPORT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
# How long after an attempt's deadline a finished handler's report is still tried: the server, not this
# process, decides whether the attempt timed out (it may have been down at the deadline).
REPORT_GRACE_SECONDS = 10.0
# The longest the runtime keeps a waiting heartbeat open.
HEARTBEAT_WAIT_SECONDS = 20.0
# Heartbeats and reports: sent again through outages (connection errors, timeouts, 5xx, 429) with backoff,
# for as long as the agent runs or until a deadline (`dataclasses.replace(THROUGH_OUTAGES, until=...)`).
THROUGH_OUTAGES = Retries(
    tries=None, first_delay=BACKOFF_FIRST_SECONDS, max_delay=BACKOFF_MAX_SECONDS, server_errors=True
)
# Registration and claims: one try each; the loops around them decide when to try again.
ONCE = Retries(tries=1)

T = TypeVar("T")


class NonRetryable(Exception):
    """Raise from a handler to fail the task without a retry."""


class RetryAfter(Exception):
    """Raise from a handler to ask for a retry after `seconds` (still within the server's cap)."""

    def __init__(self, seconds: float, message: str | None = None) -> None:
        super().__init__(message or f"retry after {seconds} s")
        self.seconds = seconds


class UnserialisableResult(TypeError):
    """A handler's result holds a value that has no JSON form."""


class RegistrationError(AINSError, RuntimeError):
    """The server refused to register the agent, re-issue its key, update it or take its first heartbeat
    (an answer that waiting cannot change); `run()` raises it."""


@dataclass
class TaskContext:
    task_id: str
    attempt: int
    capability: str
    input_data: dict[str, Any]
    cancelled: bool = False  # set when the task is cancelled on the server or its attempt timed out
    task: dict[str, Any] = field(default_factory=dict, repr=False)
    timed_out: bool = False  # set (with `cancelled`) when the attempt's deadline passed
    deadline: float | None = None  # the attempt's deadline on this process's `time.monotonic()` clock

    @property
    def dependency_results(self) -> dict[str, Any]:
        """{task_id: result_data} of each task this one waited for (empty without dependencies)."""
        return self.task.get("dependency_results") or {}

    def seconds_left(self) -> float | None:
        """Seconds until the attempt's deadline (None before the task started)."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("ains_current_task")


def current_task() -> TaskContext:
    """The task the calling handler is running (also inside sync handlers' threads)."""
    return _current.get()


@dataclass
class _Running:
    context: TaskContext
    job: asyncio.Task | None = None  # the whole run: start, handler, report
    handler: asyncio.Future | None = None  # the handler alone (an asyncio task, or a thread's future)
    abandon: asyncio.Event = field(default_factory=asyncio.Event)  # cancelled on the server


class _Link:
    """Whether the server answers: one WARNING when it stops, one INFO when it is back; never one per try."""

    def __init__(self, agent_id: str, server_url: str) -> None:
        self.agent_id = agent_id
        self.server_url = server_url
        self.down_since: float | None = None

    def failed(self, error: object, message: str = "server unreachable; retrying until it is back") -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning(
                message, extra={"agent_id": self.agent_id, "server_url": self.server_url, "error": _brief(error)}
            )

    def ok(self, sent_at: float | None = None) -> None:
        """An answer came; `sent_at`, when its request was sent (an answer to a request sent before the outage
        began, such as a long poll, proves nothing)."""
        if self.down_since is not None and (sent_at is None or sent_at >= self.down_since):
            seconds = round(time.monotonic() - self.down_since, 1)
            self.down_since = None
            log.info("server reachable again", extra={"agent_id": self.agent_id, "unreachable_seconds": seconds})


class _NotYet(Exception):
    """The server did not answer (connection error, timeout, 5xx): try again later."""


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
        lease_seconds: float = 60.0,
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
        self.lease_seconds = lease_seconds  # the server's assign_lease_seconds: how long a start is retried
        self._handlers: dict[str, Handler] = {}
        self._input_models: dict[str, type[pydantic.BaseModel]] = {}
        self._running: dict[str, _Running] = {}
        self._client: AsyncAINSClient | None = None
        self._stopping: asyncio.Event | None = None
        self._slot_freed: asyncio.Event | None = None
        self._took_task: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._link = _Link(agent_id, self.server_url)
        self._claim_uncertain = False
        self._register_conflict = False
        self.completed = 0
        self.failed = 0

    def handler(
        self, capability: str, *, input_model: type[pydantic.BaseModel] | None = None
    ) -> Callable[[Handler], Handler]:
        """Register a function (plain or async) that takes `input_data` and returns `result_data`.

        With `input_model` (a Pydantic model) the handler gets the input validated into
        that model instead of a dict; an input that does not fit fails the attempt for
        good, with a message naming the fields (retrying the same input cannot help).
        """

        def register(function: Handler) -> Handler:
            self._handlers[capability] = function
            if input_model is not None:
                self._input_models[capability] = input_model
            else:
                self._input_models.pop(capability, None)
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

    def _prepare(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._took_task = asyncio.Event()
        self._client = AsyncAINSClient(self.server_url, timeout=self.poll_wait_seconds + 30, retry=ONCE)
        # Sync handlers run here; one whose task was cancelled or timed out may run on after its slot is freed.
        self._executor = ThreadPoolExecutor(max_workers=self.max_concurrency * 2 + 2, thread_name_prefix="ains-handler")

    async def run_async(self, *, install_signal_handlers: bool = True) -> None:
        self._prepare()
        assert self._loop is not None and self._stopping is not None and self._client is not None
        if install_signal_handlers:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(signum, self._stopping.set)
        try:
            interval = await self._connect()
            if interval is not None:
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
            await self._client.aclose()
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            log.info("agent stopped", extra={"agent_id": self.agent_id})

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the agent is asked to stop."""
        assert self._stopping is not None
        if seconds > 0 and not self._stopping.is_set():
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._stopping.wait()

    # -- connecting ----------------------------------------------------------

    async def _connect(self) -> float | None:
        """Register, or re-issue the key of an agent already registered; answers the heartbeat interval.

        Waits for a server that is not up (yet), logging that once; None when asked to stop meanwhile.
        """
        assert self._stopping is not None
        if self.key_file.exists():
            identity = Identity.load(self.key_file)
        else:
            identity = Identity.generate()
            identity.save(self.key_file)
        delay = BACKOFF_FIRST_SECONDS
        while not self._stopping.is_set():
            try:
                interval = await self._connect_once(identity)
            except _NotYet as exc:
                self._link.failed(exc.__cause__ or exc, "waiting for the server")
                await self._pause(delay)
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)
                continue
            self._link.ok()
            return interval
        return None

    async def _connect_once(self, identity: Identity) -> float:
        assert self._client is not None
        client = self._client.with_options(retry=ONCE)
        profile: dict[str, Any] = {"capabilities": self.capabilities, "max_concurrency": self.max_concurrency}
        if self.display_name:
            profile["display_name"] = self.display_name
        try:
            await _answered(client.get_agent(self.agent_id))
            registered = True
        except AINSError as exc:
            if exc.status_code != 404:
                raise self._refused(exc, "look up") from None
            registered = False
        if not registered:
            # A fresh signature each time: a signature is accepted once, and an earlier try may have been used.
            try:
                agent = await _answered(client.register_agent(self.agent_id, identity, **profile))
            except AINSError as exc:
                if exc.status_code == 409 and not self._register_conflict:
                    # An earlier try may have registered us and lost its answer: look again (once).
                    self._register_conflict = True
                    raise _NotYet("registered meanwhile (an earlier answer was lost); looking again") from None
                raise self._refused(exc, "register") from None
            api_key = agent.api_key
            log.info("agent registered", extra={"agent_id": self.agent_id})
        else:
            try:
                token = await _answered(client.reissue_agent_key(self.agent_id, identity))
            except AINSError as exc:
                raise self._refused(exc, "re-issue the key of") from None
            api_key = token.api_key
            log.info("agent key re-issued", extra={"agent_id": self.agent_id})
        self._client.use_api_key(api_key)
        try:
            if registered:
                await _answered(client.update_agent(self.agent_id, **profile))
        except AINSError as exc:
            raise self._refused(exc, "update") from None
        try:
            beat = await _answered(client.heartbeat(self.agent_id))
        except AINSError as exc:
            raise self._refused(exc, "send a heartbeat for") from None
        return float(beat.next_heartbeat_in)

    def _refused(self, error: AINSError, action: str) -> RegistrationError:
        text = f"could not {action} agent {self.agent_id}: {error.status_code} {error.text}"
        return RegistrationError(error.status_code, error.detail, response=error.response, message=text)

    def _through_outages(
        self, until: float | None = None, sent: list[float] | None = None, timeout: httpx.Timeout | None = None
    ) -> AsyncAINSClient:
        """The client for heartbeats and reports: retried through outages until `until` (monotonic), each try
        noted on the link (and, in `sent`, the times of the tries that may have reached the server)."""
        assert self._client is not None

        def note(attempt: Try) -> None:
            trouble = attempt.server_trouble
            if trouble is not None:
                self._link.failed(attempt.error or trouble)
            else:
                self._link.ok(attempt.started)
            if sent is not None and attempt.may_have_arrived:
                sent.append(attempt.started)

        retry = dataclasses.replace(THROUGH_OUTAGES, until=until)
        return self._client.with_options(retry=retry, timeout=timeout, on_try=note)

    # -- heartbeats ----------------------------------------------------------

    async def _heartbeats(self, interval: float) -> None:
        """Ordinary heartbeats every `interval` while idle; one waiting heartbeat open while holding tasks."""
        assert self._took_task is not None
        read_timeout = self.poll_wait_seconds + 30
        while True:
            if not self._running:
                self._took_task.clear()
                try:
                    async with asyncio.timeout(interval):
                        await self._took_task.wait()
                    continue  # a task was taken: open a waiting heartbeat now
                except TimeoutError:
                    pass
                await self._beat(None)
                continue
            # Never longer than the heartbeat interval (the call counts as a heartbeat when it begins) nor
            # than the HTTP client waits for an answer.
            wait = max(0.0, min(HEARTBEAT_WAIT_SECONDS, interval, read_timeout - 5))
            began = time.monotonic()
            cancelled = await self._beat(wait, timeout=httpx.Timeout(wait + 15, connect=5))
            elapsed = time.monotonic() - began
            if not cancelled and elapsed < wait / 2:
                # The server answered without waiting (one without waiting heartbeats): pace them instead.
                await asyncio.sleep(wait - elapsed)

    async def _beat(self, wait_seconds: float | None, timeout: httpx.Timeout | None = None) -> list[str]:
        """One heartbeat (a waiting one with `wait_seconds`), sent until the server answers; the tasks it says
        were cancelled."""
        client = self._through_outages(timeout=timeout)
        try:
            answer = await client.heartbeat(self.agent_id, wait_seconds=wait_seconds)
        except AINSError as exc:
            log.warning(
                "heartbeat refused",
                extra={"agent_id": self.agent_id, "status": exc.status_code, "detail": exc.text[:300]},
            )
            await asyncio.sleep(BACKOFF_MAX_SECONDS)
            return []
        except ValueError:  # an answer that is not a heartbeat's
            return []
        cancelled = list(answer.cancelled_task_ids)
        for task_id in cancelled:
            self._cancelled_on_server(task_id)
        return cancelled

    def _cancelled_on_server(self, task_id: str) -> None:
        running = self._running.get(task_id)
        if running is None:
            return
        log.info("task cancelled on the server", extra={"task_id": task_id})
        self._abandon(running)

    def _abandon(self, running: _Running, *, timed_out: bool = False) -> None:
        """Stop caring about a task: tell its handler, cancel it if async, and free the slot at once."""
        assert self._slot_freed is not None
        running.context.cancelled = True
        running.context.timed_out = running.context.timed_out or timed_out
        running.abandon.set()
        if running.handler is not None and not running.handler.done():
            running.handler.cancel()  # an asyncio task is cancelled; a thread's future just stays as it is
        if self._running.get(running.context.task_id) is running:
            del self._running[running.context.task_id]
            self._slot_freed.set()

    # -- claiming ------------------------------------------------------------

    async def _claim_loop(self) -> None:
        assert self._client is not None and self._stopping is not None and self._slot_freed is not None
        client = self._client.with_options(retry=ONCE)
        stop = asyncio.create_task(self._stopping.wait())
        delay = BACKOFF_FIRST_SECONDS
        try:
            while not self._stopping.is_set():
                free = self.max_concurrency - len(self._running)
                if free <= 0:
                    self._slot_freed.clear()
                    slot = asyncio.create_task(self._slot_freed.wait())
                    await asyncio.wait([stop, slot], return_when="FIRST_COMPLETED")
                    slot.cancel()
                    continue
                claim_sent = time.monotonic()
                claim = asyncio.create_task(
                    client.claim_tasks(self.agent_id, max_tasks=free, wait_seconds=self.poll_wait_seconds)
                )
                await asyncio.wait([claim, stop], return_when="FIRST_COMPLETED")
                if not claim.done():
                    # Stopping: tasks assigned by this abandoned claim go back to the queue when their lease ends.
                    claim.cancel()
                    break
                try:
                    claimed = claim.result()
                except httpx.TransportError as exc:
                    self._link.failed(exc)
                    if not isinstance(exc, NOT_SENT):
                        self._claim_uncertain = True  # the server may have assigned tasks whose answer was lost
                    await self._pause(delay)
                    delay = min(delay * 2, BACKOFF_MAX_SECONDS)
                    continue
                except AINSError as exc:
                    if exc.status_code >= 500:
                        self._link.failed(f"{exc.status_code} {exc.text[:200]}")
                        self._claim_uncertain = True
                    else:
                        self._link.ok(claim_sent)
                        if exc.status_code != 429:
                            log.warning(
                                "claim refused",
                                extra={"agent_id": self.agent_id, "status": exc.status_code, "detail": exc.text[:300]},
                            )
                    await self._pause(delay)
                    delay = min(delay * 2, BACKOFF_MAX_SECONDS)
                    continue
                self._link.ok(claim_sent)
                delay = BACKOFF_FIRST_SECONDS
                for task in claimed.tasks:
                    self._take(task.model_dump(mode="json"))
                if self._claim_uncertain:
                    await self._adopt_assigned()
        finally:
            stop.cancel()

    async def _adopt_assigned(self) -> None:
        """After a claim whose answer was lost, take up the tasks it assigned (rather than wait for their lease)."""
        assert self._client is not None
        try:
            page = await self._client.with_options(retry=ONCE).list_tasks_page(limit=50, status=TaskStatus.ASSIGNED)
        except (httpx.TransportError, AINSError, ValueError):
            return
        self._claim_uncertain = False
        for task in (task.model_dump(mode="json") for task in page.tasks):
            if task.get("assigned_agent_id") != self.agent_id or task["task_id"] in self._running:
                continue
            if len(self._running) >= self.max_concurrency:
                break
            log.info("taking up a task whose claim answer was lost", extra={"task_id": task["task_id"]})
            self._take(task)

    def _take(self, task: dict[str, Any]) -> None:
        assert self._took_task is not None
        context = TaskContext(
            task["task_id"], task["attempt"], task["capability_required"], task["input_data"], task=task
        )
        running = _Running(context)
        self._running[context.task_id] = running
        running.job = asyncio.create_task(self._run_task(context, running))
        self._took_task.set()

    # -- one task ------------------------------------------------------------

    async def _run_task(self, context: TaskContext, running: _Running | None = None) -> None:
        assert self._slot_freed is not None
        claimed = time.monotonic()
        running = running or _Running(context)
        try:
            sent: list[float] = []
            answer = await self._report(context, "start", {}, until=claimed + self.lease_seconds, sent=sent)
            if answer != "ok" or running.abandon.is_set():
                return
            # The server's clock started no earlier than the first start that may have reached it.
            timeout = float(context.task.get("timeout_seconds") or 0)
            if timeout > 0:
                context.deadline = (min(sent) if sent else claimed) + timeout
            handler = self._handlers.get(context.capability)
            if handler is None:
                await self._fail(context, {"error_message": f"no handler for {context.capability}", "retryable": False})
                return
            await self._execute(context, running, handler)
        finally:
            if self._running.get(context.task_id) is running:
                del self._running[context.task_id]
            self._slot_freed.set()

    async def _execute(self, context: TaskContext, running: _Running, handler: Handler) -> None:
        assert self._loop is not None and self._executor is not None
        argument: Any = context.input_data
        model = self._input_models.get(context.capability)
        if model is not None:
            try:
                argument = model.model_validate(context.input_data)
            except pydantic.ValidationError as exc:
                message = f"input_data does not fit {model.__name__}: {_validation_summary(exc)}"
                await self._fail(context, {"error_message": message[:2000], "retryable": False})
                return
        token = _current.set(context)
        try:
            if inspect.iscoroutinefunction(handler):
                job: asyncio.Future = asyncio.ensure_future(handler(argument))
            else:
                call = contextvars.copy_context().run
                job = self._loop.run_in_executor(self._executor, call, handler, argument)
        finally:
            _current.reset(token)
        running.handler = job
        job.add_done_callback(_consume)
        abandon = asyncio.create_task(running.abandon.wait())
        timeout = None if context.deadline is None else max(0.0, context.deadline - time.monotonic())
        try:
            done, _ = await asyncio.wait([job, abandon], timeout=timeout, return_when="FIRST_COMPLETED")
        except asyncio.CancelledError:
            # The agent is stopping and the grace period is over.
            job.cancel()
            if not context.cancelled:
                until = (
                    time.monotonic() + 10 if context.deadline is None else min(context.deadline, time.monotonic() + 10)
                )
                await self._report(context, "fail", {"error_message": "agent shut down before finishing"}, until=until)
            raise
        finally:
            abandon.cancel()
        if job not in done:
            if not running.abandon.is_set():
                log.warning(
                    "attempt timed out: handler cancelled, the server fails the attempt",
                    extra={"task_id": context.task_id, "attempt": context.attempt},
                )
                self._abandon(running, timed_out=True)
            return  # cancelled or timed out: the server already knows, nothing to report
        if context.cancelled:
            return
        try:
            result = job.result()
        except NonRetryable as exc:
            await self._fail(context, {"error_message": _describe(exc), "retryable": False})
            return
        except RetryAfter as exc:
            await self._fail(context, {"error_message": _describe(exc), "retry_after_seconds": exc.seconds})
            return
        except asyncio.CancelledError:
            await self._fail(context, {"error_message": "the handler was cancelled"})
            return
        except Exception as exc:  # any other failure of the handler asks for a retry
            await self._fail(context, {"error_message": _describe(exc)})
            return
        try:
            result_data = result_payload(result)
        except UnserialisableResult as exc:
            await self._fail(context, {"error_message": f"result could not be serialised: {exc}", "retryable": False})
            return
        answer = await self._report(context, "complete", {"result_data": result_data})
        if answer == "ok":
            self.completed += 1
        elif isinstance(answer, AINSError):
            # The server refused the result itself (too large, text it does not store): the attempt failed.
            detail = str(answer.detail)[:500]
            await self._fail(
                context,
                {
                    "error_message": f"the server refused the result ({answer.status_code}): {detail}",
                    "retryable": False,
                },
            )

    async def _fail(self, context: TaskContext, body: dict[str, Any]) -> None:
        if context.cancelled:
            return
        if await self._report(context, "fail", body) == "ok":
            self.failed += 1

    async def _report(
        self,
        context: TaskContext,
        action: str,
        body: dict[str, Any],
        *,
        until: float | None = None,
        sent: list[float] | None = None,
    ) -> str | AINSError:
        """Send start/complete/fail with the claimed attempt, retried until the attempt's deadline.

        Answers "ok", "refused" (409/404: the attempt was given up — lease, timeout, cancellation — and a newer
        one counts), "gave up" (no answer in time), or the `AINSError` of any other refusal.
        """
        if until is None:
            until = None if context.deadline is None else context.deadline + REPORT_GRACE_SECONDS
        client = self._through_outages(until, sent, REPORT_TIMEOUT)
        task_id, attempt = context.task_id, context.attempt
        try:
            if action == "start":
                await client.start_task(task_id, attempt=attempt)
            elif action == "complete":
                await client.complete_task(task_id, body["result_data"], attempt=attempt)
            else:
                await client.fail_task(task_id, attempt=attempt, **body)
        except AINSError as exc:
            if exc.status_code >= 500 or exc.status_code == 429:
                return self._gave_up(context, action)  # still no answer at `until`
            if exc.status_code in (404, 409):
                log.info(
                    "server refused a stale report",
                    extra={"task_id": task_id, "action": action, "detail": exc.text[:300]},
                )
                return "refused"
            log.warning(
                "server refused a report",
                extra={"task_id": task_id, "action": action, "status": exc.status_code, "detail": exc.text[:300]},
            )
            return exc
        except httpx.TransportError:
            return self._gave_up(context, action)
        except ValueError:  # accepted, with an answer that is not a task's: the report counts all the same
            pass
        return "ok"

    def _gave_up(self, context: TaskContext, action: str) -> str:
        log.warning(
            "gave up reporting: the attempt's deadline passed while the server was unreachable",
            extra={"task_id": context.task_id, "action": action},
        )
        return "gave up"

    async def _drain(self) -> None:
        if not self._running:
            return
        log.info("draining", extra={"agent_id": self.agent_id, "running": len(self._running)})
        jobs = [running.job for running in self._running.values() if running.job is not None]
        _done, pending = await asyncio.wait(jobs, timeout=self.grace_seconds)
        for job in pending:
            job.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)


# -- results -------------------------------------------------------------------


def result_payload(result: Any) -> dict[str, Any]:
    """`result_data` for a handler's return value: an object as is, anything else as `{"result": …}`."""
    value = to_json(result)
    return value if isinstance(value, dict) else {"result": value}


def to_json(value: Any, where: str = "result") -> Any:
    """`value` made of JSON types only; `UnserialisableResult` naming the place and type of what cannot be.

    Pydantic models → `model_dump(mode="json")`; dataclasses → their fields; datetime, date and time →
    ISO 8601; UUID, Decimal and paths → strings; enums → their value; sets, frozensets and tuples → lists.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnserialisableResult(f"{where}: {value!r} is not a JSON number")
        return float(value)
    if isinstance(value, dict):
        return {_key(k, where): to_json(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if isinstance(value, set | frozenset):
            with contextlib.suppress(TypeError):
                items = sorted(items)
        return [to_json(item, f"{where}[{i}]") for i, item in enumerate(items)]
    if hasattr(value, "model_dump") and callable(value.model_dump) and not isinstance(value, type):
        try:
            return to_json(value.model_dump(mode="json"), where)
        except (TypeError, ValueError) as exc:
            raise UnserialisableResult(f"{where}: {type(value).__name__} could not be dumped: {exc}") from exc
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name), f"{where}.{f.name}") for f in dataclasses.fields(value)}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return to_json(value.value, where)
    if isinstance(value, uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise UnserialisableResult(f"{where}: Decimal {value} is not a JSON number")
        return str(value)
    raise UnserialisableResult(f"{where}: object of type {type(value).__qualname__} is not JSON-serialisable")


def _key(key: Any, where: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float | uuid.UUID | Decimal | dt.datetime | dt.date | dt.time | enum.Enum):
        converted = to_json(key, where)
        return converted if isinstance(converted, str) else str(converted)
    raise UnserialisableResult(f"{where}: a key of type {type(key).__qualname__} is not JSON-serialisable")


def _consume(future: asyncio.Future) -> None:
    """Fetch an abandoned handler's outcome so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _brief(error: object) -> str:
    if isinstance(error, BaseException):
        return _describe(error)
    return str(error)


async def _answered(request: Awaitable[T]) -> T:
    """The answer to one request of the connection; `_NotYet` when the server did not really answer
    (a connection error, a timeout, a 5xx). Any other error answer raises its `AINSError`."""
    try:
        return await request
    except httpx.TransportError as exc:
        raise _NotYet(_brief(exc)) from exc
    except AINSError as exc:
        if exc.status_code >= 500:
            raise _NotYet(f"{exc.status_code} {exc.text[:200]}") from None
        raise
