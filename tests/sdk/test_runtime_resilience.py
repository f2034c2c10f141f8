"""The agent runtime through outages, and what reaches a running handler (issue 11), against real servers.

Each test starts its own `ains serve` (SQLite and PostgreSQL) with the default heartbeat interval (30 s) and
a wake-up fallback far above the waits below, so a cancellation that reaches a handler within them can only
have come through the waiting heartbeat; timeouts are enforced by the runtime itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal

import pytest
from pydantic import BaseModel

from ains.agent import Agent, current_task
from ains.client import AsyncAINSClient
from tests.conftest import POSTGRES_URL, _admin_execute, failed, unavailable
from tests.helpers import ADMIN_KEY, RestartableServer, free_port

SETTINGS = {
    "AINS_RETRY_EXPONENTIAL_BASE_SECONDS": "0.1",
    "AINS_RETRY_FIXED_SECONDS": "0.1",
    "AINS_ASSIGN_LEASE_SECONDS": "5",
    "AINS_TIMEOUT_CHECK_SECONDS": "0.2",
    "AINS_WAKEUP_FALLBACK_SECONDS": "30",
}
CAPABILITY = "resilience:v1"


@pytest.fixture(params=["sqlite", "postgres"])
def server_env(request, tmp_path):
    """Settings for a server on a database of its own: a SQLite file, or a scratch PostgreSQL database."""
    env = SETTINGS | {"AINS_DATA_DIR": str(tmp_path / "server")}
    if request.param == "sqlite":
        yield env
        return
    from sqlalchemy.engine import make_url

    name = f"ains_sdk_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin_execute(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable(f"PostgreSQL unavailable at {POSTGRES_URL}: {type(exc).__name__}: {exc}")
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    yield env | {"AINS_DATABASE_URL": url}
    asyncio.run(_admin_execute(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class LoggedServer(RestartableServer):
    """With the access log on: when a test fails, its requests (route, status, duration) are evidence."""

    log_level = "INFO"


@pytest.fixture
def server(server_env, request):
    process = LoggedServer(server_env)
    yield process
    process.stop_keeping_log()
    if failed(request):
        # Printed into the failed test's report ("Captured stdout teardown"): what the server saw.
        print(f"--- the server's log (last 300 lines of {process.log.name}) ---")
        print("\n".join(process.output().splitlines()[-300:]))
    process.discard_log()


@pytest.fixture(autouse=True)
def _agent_log(caplog):
    """The runtime's own INFO lines (claims whose answer was lost, reports sent again) in a failed test's report."""
    caplog.set_level(logging.INFO, logger="ains.agent")


@pytest.fixture
def agent_logs(caplog):
    caplog.set_level(logging.INFO, logger="ains.agent")
    return lambda message: [r for r in caplog.records if r.name == "ains.agent" and r.getMessage() == message]


class Agents:
    """SDK agents running in this test's event loop, stopped (gracefully) at the end."""

    def __init__(self, url: str, directory) -> None:
        self.url = url
        self.directory = directory
        self.running: list[tuple[Agent, asyncio.Task]] = []

    def make(self, agent_id: str | None = None, **options) -> Agent:
        agent_id = agent_id or f"agent_{uuid.uuid4().hex[:8]}"
        options = {"poll_wait_seconds": 1} | options
        return Agent(self.url, agent_id, self.directory / f"{agent_id}.key", [CAPABILITY], **options)

    def start(self, agent: Agent) -> asyncio.Task:
        job = asyncio.create_task(agent.run_async(install_signal_handlers=False))
        self.running.append((agent, job))
        return job

    async def stop(self) -> None:
        for agent, _ in self.running:
            agent.stop()
        for _, job in self.running:
            await asyncio.wait_for(job, timeout=60)


@pytest.fixture
async def agents(server, tmp_path):
    group = Agents(server.url, tmp_path)
    yield group
    await group.stop()


async def client_for(url: str) -> AsyncAINSClient:
    async with AsyncAINSClient(url, ADMIN_KEY) as admin:
        key = (await admin.create_key(f"client_{uuid.uuid4().hex[:8]}", "resilience")).api_key
    return AsyncAINSClient(url, key)


def body(**extra):
    return {"task_type": "resilience", "capability_required": CAPABILITY, "input_data": {}} | extra


async def until(predicate, timeout: float, what: str):
    """Wait for an event; fail (instead of hanging) when it does not come within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)
    return value


# -- (a) a server SIGKILLed and restarted while agents work ----------------------------------------------------


@pytest.mark.slow
async def test_a_server_killed_and_restarted_under_agents_loses_and_repeats_nothing(server, agents, agent_logs, caplog):
    tasks_total = 200
    running: Counter = Counter()  # task id → handlers running it now
    overlaps: list[str] = []
    executions: Counter = Counter()
    finished = 0

    async def work(input_data):
        nonlocal finished
        task_id = current_task().task_id
        running[task_id] += 1
        executions[task_id] += 1
        if running[task_id] > 1:
            overlaps.append(task_id)
        try:
            await asyncio.sleep(random.uniform(0.02, 0.15))
        finally:
            running[task_id] -= 1
        finished += 1
        return {"n": input_data["n"]}

    fleet = [agents.make(max_concurrency=4) for _ in range(3)]
    for agent in fleet:
        agent.handler(CAPABILITY)(work)
        agents.start(agent)
    client = await client_for(server.url)
    async with client:
        for start in range(0, tasks_total, 100):
            batch = [body(input_data={"n": n}) for n in range(start, start + 100)]
            assert len((await client.submit_batch(batch)).submitted) == 100
        await until(lambda: finished >= 30, 60, "agents completing tasks")
        server.kill()
        assert finished < tasks_total  # killed mid-run
        await asyncio.sleep(3.5)
        server.restart()

        async def statuses() -> Counter:
            page = await client.list_tasks_page(limit=500)
            return Counter(t.status for t in page.tasks)

        deadline = time.monotonic() + 120
        while (counts := await statuses())["COMPLETED"] + counts["FAILED"] + counts["CANCELLED"] < tasks_total:
            assert time.monotonic() < deadline, f"not all tasks final within 120 s: {counts}"
            await asyncio.sleep(0.5)
        page = await client.list_tasks_page(limit=500)
        assert Counter(t.status for t in page.tasks) == {"COMPLETED": tasks_total}  # none lost, none failed
        assert sorted(t.result_data["n"] for t in page.tasks) == list(range(tasks_total))
        assert overlaps == []  # no task ran twice at once
        assert set(executions.values()) == {1}  # nor twice one after the other
        for task in page.tasks:
            outcomes = [a.outcome for a in (await client.task_attempts(task.task_id)).attempts]
            assert outcomes.count("completed") == 1 and "failed" not in outcomes, (task.task_id, outcomes)
    # One line when the server went away and one when it came back, per agent; no tracebacks.
    for message in ("server unreachable; retrying until it is back", "server reachable again"):
        lines = Counter(r.agent_id for r in agent_logs(message))
        assert lines == {agent.agent_id: 1 for agent in fleet}, (message, lines)
    assert not [r for r in caplog.records if r.name == "ains.agent" and r.exc_info]


class FaultyProxy:
    """A real HTTP proxy in front of the server that answers 503 "Database unavailable" to everything while
    `failing` is set, counting what it refused by the path's last part (claim, start, complete, heartbeat…)."""

    def __init__(self, target: str) -> None:
        import httpx

        self.http = httpx.AsyncClient(base_url=target, timeout=60)
        self.failing = False
        self.refused: Counter = Counter()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def __call__(self, scope, receive, send) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if self.failing:
            self.refused[scope["path"].rsplit("/", 1)[-1]] += 1
            status, headers, content = (
                503,
                [(b"content-type", b"application/json")],
                b'{"detail":"Database unavailable"}',
            )
        else:
            skip = {b"host", b"content-length", b"connection"}
            response = await self.http.request(
                scope["method"],
                scope["path"],
                params=scope["query_string"].decode(),
                content=body,
                headers=[(k.decode(), v.decode()) for k, v in scope["headers"] if k.lower() not in skip],
            )
            status, content = response.status_code, response.content
            headers = [(b"content-type", response.headers.get("content-type", "application/json").encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def __aenter__(self) -> FaultyProxy:
        import uvicorn

        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning")
        self.server = uvicorn.Server(config)
        self.serving = asyncio.create_task(self.server.serve())
        await until(lambda: self.server.started, 20, "the proxy starting")
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.serving, 30)
        await self.http.aclose()


async def test_503s_on_claims_heartbeats_and_reports_are_waited_out(server, tmp_path, agent_logs):
    async with FaultyProxy(server.url) as proxy:
        group = Agents(proxy.url, tmp_path)
        agent = group.make()
        loop = asyncio.get_running_loop()

        @agent.handler(CAPABILITY)
        async def work(input_data):
            if input_data["n"] == 2:  # the server "loses its database" just as this one finishes
                proxy.failing = True
                loop.call_later(2, setattr, proxy, "failing", False)
            return {"n": input_data["n"]}

        job = group.start(agent)
        try:
            async with await client_for(server.url) as client:
                first = await client.submit_task(**body(input_data={"n": 1}))
                assert (await client.wait_for_task(first.task_id, timeout=20)).status == "COMPLETED"
                proxy.failing = True  # claims (and heartbeats) answered 503 for a while
                await until(lambda: proxy.refused["claim"] >= 2, 20, "claims refused")
                second = await client.submit_task(**body(input_data={"n": 2}))
                proxy.failing = False
                done = await client.wait_for_task(second.task_id, timeout=30)
                assert done.status == "COMPLETED" and done.result_data == {"n": 2}
                assert proxy.refused["complete"] >= 1  # its report met 503s and was sent again
                third = await client.submit_task(**body(input_data={"n": 3}))
                assert (await client.wait_for_task(third.task_id, timeout=20)).status == "COMPLETED"
            assert not job.done()  # nothing raised out of run()
        finally:
            await group.stop()
    assert len(agent_logs("server unreachable; retrying until it is back")) == 2  # one per outage
    assert len(agent_logs("server reachable again")) == 2


# -- (b) run() started before the server is up ------------------------------------------------------------------


@pytest.mark.parametrize("registered", [False, True], ids=["first-run", "key-re-issue"])
async def test_run_waits_for_a_server_that_is_not_up_yet(server_env, tmp_path, agent_logs, registered):
    port = free_port()
    server = RestartableServer(server_env, port=port, start=registered)
    group = Agents(server.url, tmp_path)
    agent_id = f"agent_{uuid.uuid4().hex[:8]}"
    try:
        if registered:  # a first run registers; the server then goes away before the second
            first = group.make(agent_id)
            job = group.start(first)
            await until(lambda: agent_logs("agent registered"), 20, "registration")
            first.stop()
            await asyncio.wait_for(job, 20)
            group.running.clear()
            server.kill()
        agent = group.make(agent_id)

        @agent.handler(CAPABILITY)
        async def echo(input_data):
            return {"echo": input_data}

        job = group.start(agent)
        await until(lambda: agent_logs("waiting for the server"), 20, "the agent saying it waits")
        await asyncio.sleep(1)  # a few retries' worth
        assert not job.done(), job.exception() if job.done() else None
        server.restart()
        async with await client_for(server.url) as client:
            task = await client.submit_task(**body(input_data={"x": 1}))
            done = await client.wait_for_task(task.task_id, timeout=30)
        assert done.status == "COMPLETED" and done.result_data == {"echo": {"x": 1}}
        assert len(agent_logs("waiting for the server")) == 1
        assert len(agent_logs("agent key re-issued" if registered else "agent registered")) == 1
    finally:
        await group.stop()
        server.stop()


# -- (c) results that need serialising ----------------------------------------------------------------------------


class Summary(BaseModel):
    words: int
    at: dt.datetime
    tags: set[str]


@dataclasses.dataclass
class Point:
    x: Decimal
    when: dt.date
    ref: uuid.UUID
    pair: tuple[int, int]


async def test_results_are_serialised_and_an_unserialisable_one_fails_the_attempt(server, agents):
    ref = uuid.UUID("12345678-1234-5678-1234-567812345678")
    moment = dt.datetime(2026, 11, 27, 12, 30, tzinfo=dt.UTC)
    results = {
        "model": Summary(words=3, at=moment, tags={"b", "a"}),
        "dataclass": Point(Decimal("1.10"), dt.date(2026, 11, 27), ref, (1, 2)),
        "datetime": moment,
        "nested": {"points": [Point(Decimal("2"), dt.date(2026, 1, 1), ref, (3, 4))], "ids": {ref}, "t": (moment,)},
        "unserialisable": {"fine": 1, "bad": [object()]},
    }
    agent = agents.make()

    @agent.handler(CAPABILITY)
    def produce(input_data):
        return results[input_data["kind"]]

    agents.start(agent)
    async with await client_for(agents.url) as client:
        done = {}
        for kind in results:
            task = await client.submit_task(**body(input_data={"kind": kind}, max_retries=3))
            done[kind] = await client.wait_for_task(task.task_id, timeout=30)
    model = done["model"].result_data
    assert model == {"words": 3, "at": "2026-11-27T12:30:00Z", "tags": model["tags"]}  # Pydantic's own JSON form
    assert sorted(model["tags"]) == ["a", "b"]  # a set in a model: Pydantic lists it in the set's order
    point = {"x": "1.10", "when": "2026-11-27", "ref": str(ref), "pair": [1, 2]}
    assert done["dataclass"].result_data == point
    assert done["datetime"].result_data == {"result": "2026-11-27T12:30:00+00:00"}
    assert done["nested"].result_data == {
        "points": [{"x": "2", "when": "2026-01-01", "ref": str(ref), "pair": [3, 4]}],
        "ids": [str(ref)],
        "t": ["2026-11-27T12:30:00+00:00"],
    }
    bad = done["unserialisable"]
    assert bad.status == "FAILED" and bad.retry_count == 0  # failed for good, not left ACTIVE
    assert "result['bad'][0]" in bad.error_message and "object of type object" in bad.error_message


# -- (d) cancellation reaches the running handler --------------------------------------------------------------


async def test_a_cancel_reaches_a_sync_handler_through_the_waiting_heartbeat(server, agents):
    agent = agents.make(max_concurrency=1)
    started, saw_cancel, release = threading.Event(), threading.Event(), threading.Event()
    ran = []

    @agent.handler(CAPABILITY)
    def patient(input_data):
        ran.append(input_data["n"])
        if input_data["n"] == 2:
            return {"second": True}
        started.set()
        while not release.wait(0.01):
            if current_task().cancelled:
                saw_cancel.set()
                break
        release.wait(30)  # keeps running after it saw the flag: the slot is free anyway
        return {"ignored": True}

    agents.start(agent)
    try:
        async with await client_for(agents.url) as client:
            first = await client.submit_task(**body(input_data={"n": 1}))
            await until(started.is_set, 20, "the handler starting")
            await client.cancel_task(first.task_id, "no longer needed")
            # The ordinary heartbeat comes every 30 s here: only the waiting one brings the cancel this soon.
            await until(saw_cancel.is_set, 10, "current_task().cancelled becoming true")
            second = await client.submit_task(**body(input_data={"n": 2}))
            done = await client.wait_for_task(second.task_id, timeout=30)
            assert done.result_data == {"second": True} and not release.is_set()  # the slot was freed at once
            assert (await client.get_task(first.task_id)).status == "CANCELLED"
    finally:
        release.set()
    assert ran == [1, 2]


async def test_a_cancel_cancels_an_async_handler_and_frees_its_slot(server, agents):
    agent = agents.make(max_concurrency=1)
    events: list[str] = []

    @agent.handler(CAPABILITY)
    async def sleeper(input_data):
        if input_data["n"] == 2:
            events.append("second ran")
            return {}
        events.append("first started")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            events.append("first cancelled")
            raise
        events.append("first finished")

    agents.start(agent)
    async with await client_for(agents.url) as client:
        first = await client.submit_task(**body(input_data={"n": 1}))
        await until(lambda: "first started" in events, 20, "the handler starting")
        second = await client.submit_task(**body(input_data={"n": 2}))
        await asyncio.sleep(0.5)
        assert "second ran" not in events  # one slot, held by the first
        await client.cancel_task(first.task_id, "stop")
        await until(lambda: "first cancelled" in events, 10, "the handler being cancelled")
        assert (await client.wait_for_task(second.task_id, timeout=30)).status == "COMPLETED"
    assert events == ["first started", "first cancelled", "second ran"]


# -- (e) a timeout reaches the handler at the deadline ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_timed_out_handler_loses_its_slot_at_the_deadline(server, agents, kind):
    agent = agents.make(max_concurrency=1)
    events: list[str] = []
    release = threading.Event()

    if kind == "async":

        @agent.handler(CAPABILITY)
        async def slow(input_data):
            if input_data["n"] == 2:
                events.append("second ran")
                return {}
            events.append("first started")
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                events.append(f"first cancelled, timed out: {current_task().timed_out}")
                raise

    else:

        @agent.handler(CAPABILITY)
        def slow(input_data):
            if input_data["n"] == 2:
                events.append("second ran")
                return {}
            events.append("first started")
            while not release.wait(0.01):
                if current_task().cancelled:
                    events.append(f"first cancelled, timed out: {current_task().timed_out}")
                    break
            release.wait(30)
            return {}

    agents.start(agent)
    try:
        async with await client_for(agents.url) as client:
            first = await client.submit_task(**body(input_data={"n": 1}, timeout_seconds=1))
            await until(lambda: "first started" in events, 20, "the handler starting")
            second = await client.submit_task(**body(input_data={"n": 2}))
            assert (await client.wait_for_task(second.task_id, timeout=30)).status == "COMPLETED"
            timed_out = await client.wait_for_task(first.task_id, timeout=30)
        assert timed_out.status == "FAILED" and "timed out" in timed_out.error_message  # the server's verdict
    finally:
        release.set()
    assert events == ["first started", "first cancelled, timed out: True", "second ran"]
