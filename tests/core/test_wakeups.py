"""Wake-ups across server processes on one PostgreSQL (LISTEN/NOTIFY), and within one process.

The process-level tests set `wakeup_fallback_seconds` (how often a waiting claim
looks again by itself) and `timeout_check_seconds` (the retry wake-up duty) far
above the waits they measure, so what reaches a waiting claim in time can only
be the notification.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from ains.core.listener import APPLICATION_NAME, decode, encode
from ains.core.metrics import DB_STATEMENTS
from ains.core.signals import CACHE, EVERYTHING, TASK, Wakeups
from ains.identity import Identity
from tests.helpers import (
    ADMIN,
    ServerProcess,
    bearer,
    claim,
    create_client,
    process_environment,
    register_agent,
    running,
    started_server_processes,
    submit,
    task_body,
)

SLOW_FALLBACK = {"AINS_WAKEUP_FALLBACK_SECONDS": "60", "AINS_TIMEOUT_CHECK_SECONDS": "60"}
WAIT_SECONDS = 30


@pytest.fixture
def two_servers(postgres_only_url, tmp_path):
    env = {"AINS_DATABASE_URL": postgres_only_url, "AINS_DATA_DIR": str(tmp_path / "data")} | SLOW_FALLBACK
    processes = [ServerProcess(env), ServerProcess(env)]
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture
async def two_clients(two_servers):
    """An HTTP client for each of the two servers."""
    first, second = two_servers
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=60) as a,
        httpx.AsyncClient(base_url=second.url, timeout=60) as b,
    ):
        yield a, b


async def _register(http: httpx.AsyncClient, agent_id: str, **extra) -> dict[str, str]:
    body = Identity.generate().registration(agent_id) | {"capabilities": ["data:v1"], "max_concurrency": 5, **extra}
    response = await http.post("/ains/agents", json=body)
    assert response.status_code == 201, response.text
    return bearer(response.json()["api_key"])


async def _client_key(http: httpx.AsyncClient, client_id: str = "client_1") -> tuple[str, dict[str, str]]:
    response = await http.post("/ains/api-keys", json={"client_id": client_id, "name": "t"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()["key_id"], bearer(response.json()["api_key"])


async def _listeners(url: str) -> list[int]:
    parsed = make_url(url)
    conn = await asyncpg.connect(host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = $2",
            APPLICATION_NAME,
            parsed.database,
        )
        return [row["pid"] for row in rows]
    finally:
        await conn.close()


async def _terminate(url: str, pids: list[int]) -> None:
    parsed = make_url(url)
    conn = await asyncpg.connect(host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database)
    try:
        for pid in pids:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


@pytest.mark.slow
async def test_a_task_submitted_through_one_process_wakes_a_claim_waiting_in_another(two_clients):
    a, b = two_clients
    _, owner = await _client_key(a)
    agent = await _register(a, "agent_1")
    for _ in range(3):
        waiting = asyncio.create_task(
            b.post("/ains/agents/agent_1/tasks/claim", json={"wait_seconds": WAIT_SECONDS}, headers=agent)
        )
        await asyncio.sleep(0.5)  # parked in the second process
        assert not waiting.done()
        submitted_at = time.monotonic()
        task = (await a.post("/ains/tasks", json=task_body(), headers=owner)).json()
        answer = await waiting
        latency = time.monotonic() - submitted_at
        assert [t["task_id"] for t in answer.json()["tasks"]] == [task["task_id"]]
        # Without the notification the claim would sit out its whole wait (the fallback poll is 60 s).
        assert latency < WAIT_SECONDS / 2, latency
        print(f"cross-process wake-up: {latency * 1000:.0f} ms")


@pytest.mark.slow
async def test_a_cancel_in_one_process_answers_a_heartbeat_waiting_in_another(two_clients):
    a, b = two_clients
    _, owner = await _client_key(a)
    agent = await _register(a, "agent_1")
    task = (await a.post("/ains/tasks", json=task_body(), headers=owner)).json()
    claimed = await b.post("/ains/agents/agent_1/tasks/claim", json={}, headers=agent)
    assert [t["task_id"] for t in claimed.json()["tasks"]] == [task["task_id"]]
    waiting = asyncio.create_task(
        b.post("/ains/agents/agent_1/heartbeat", json={"wait_seconds": WAIT_SECONDS}, headers=agent)
    )
    await asyncio.sleep(0.5)  # parked in the second process
    assert not waiting.done()
    cancelled_at = time.monotonic()
    assert (await a.post(f"/ains/tasks/{task['task_id']}/cancel", headers=owner)).status_code == 200
    answer = await waiting
    latency = time.monotonic() - cancelled_at
    assert answer.json()["cancelled_task_ids"] == [task["task_id"]]
    # Without the notification the heartbeat would sit out its whole wait (the fallback poll is 60 s).
    assert latency < WAIT_SECONDS / 2, latency
    print(f"cross-process cancel wake-up: {latency * 1000:.0f} ms")


@pytest.mark.slow
async def test_a_revoked_key_stops_working_in_every_process(two_clients, postgres_only_url):
    a, b = two_clients
    key_id, key = await _client_key(a)
    other_id, other = await _client_key(a, "client_2")
    # Both processes now know the keys (and keep them without a database read).
    for http in (a, b):
        for headers in (key, other):
            assert (await http.get("/ains/tasks", headers=headers)).status_code == 200

    assert (await a.delete(f"/ains/api-keys/{key_id}", headers=ADMIN)).status_code in (200, 204)
    # At once in the process that revoked it …
    assert (await a.get("/ains/tasks", headers=key)).status_code == 401
    # … and in the other one as soon as the notification arrives.
    deadline = time.monotonic() + 10
    while (status := (await b.get("/ains/tasks", headers=key)).status_code) == 200:
        assert time.monotonic() < deadline, "the other process still accepts a revoked key"
        await asyncio.sleep(0.05)
    assert status == 401
    assert (await b.get("/ains/tasks", headers=other)).status_code == 200

    # The link cut: a revocation made meanwhile must not be missed either.
    await _terminate(postgres_only_url, await _listeners(postgres_only_url))
    assert (await a.delete(f"/ains/api-keys/{other_id}", headers=ADMIN)).status_code in (200, 204)
    deadline = time.monotonic() + 15
    while (status := (await b.get("/ains/tasks", headers=other)).status_code) == 200:
        assert time.monotonic() < deadline, "a revocation made while the link was down was missed"
        await asyncio.sleep(0.05)
    assert status == 401


@pytest.mark.slow
async def test_the_in_process_cache_hears_changes_made_by_another_process(two_clients):
    a, b = two_clients
    _, owner = await _client_key(a)
    task = (await a.post("/ains/tasks", json=task_body(), headers=owner)).json()
    assert (await b.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()["status"] == "PENDING"
    cancel = await a.post(f"/ains/tasks/{task['task_id']}/cancel", json={"reason": "x"}, headers=owner)
    assert cancel.status_code == 200
    # The second process cached PENDING for 30 s; the change reaches it through the wake-up link.
    deadline = time.monotonic() + 10
    url = f"/ains/tasks/{task['task_id']}"
    while (status := (await b.get(url, headers=owner)).json()["status"]) != "CANCELLED":
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_wakeups_survive_a_cut_listening_connection(two_clients, postgres_only_url):
    a, b = two_clients
    _, owner = await _client_key(a)
    agent = await _register(a, "agent_1")
    old = await _listeners(postgres_only_url)
    assert len(old) == 2
    await _terminate(postgres_only_url, old)
    deadline = time.monotonic() + 15
    while len(new := [pid for pid in await _listeners(postgres_only_url) if pid not in old]) < 2:
        assert time.monotonic() < deadline, "the listeners did not reconnect"
        await asyncio.sleep(0.1)
    waiting = asyncio.create_task(
        b.post("/ains/agents/agent_1/tasks/claim", json={"wait_seconds": WAIT_SECONDS}, headers=agent)
    )
    await asyncio.sleep(0.5)
    started = time.monotonic()
    task = (await a.post("/ains/tasks", json=task_body(), headers=owner)).json()
    answer = await waiting
    assert [t["task_id"] for t in answer.json()["tasks"]] == [task["task_id"]]
    assert time.monotonic() - started < WAIT_SECONDS / 2
    assert len(new) == 2


@pytest.mark.slow
def test_serve_workers_is_refused_on_sqlite(tmp_path):
    import os
    import subprocess
    import sys

    env = os.environ | {"AINS_DATA_DIR": str(tmp_path / "data")}
    env.pop("AINS_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "ains", "serve", "--workers", "2", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers needs PostgreSQL" in done.stderr
    assert not (tmp_path / "data" / "ains.db").exists()  # refused before touching anything


@pytest.mark.slow
async def test_serve_with_two_workers_shares_one_port(postgres_only_url, tmp_path):
    env = {"AINS_DATABASE_URL": postgres_only_url, "AINS_DATA_DIR": str(tmp_path / "data")}
    server = ServerProcess(env, ("--workers", "2"))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            _, owner = await _client_key(http)
            agent = await _register(http, "agent_1")
            tasks = [(await http.post("/ains/tasks", json=task_body(), headers=owner)).json() for _ in range(20)]
            claimed = []
            while len(claimed) < len(tasks):
                answer = await http.post(
                    "/ains/agents/agent_1/tasks/claim", json={"max_tasks": 5, "start": True}, headers=agent
                )
                for task in answer.json()["tasks"]:
                    claimed.append(task["task_id"])
                    done = await http.post(
                        f"/ains/tasks/{task['task_id']}/complete", json={"result_data": {}}, headers=agent
                    )
                    assert done.status_code == 200
            assert sorted(claimed) == sorted(t["task_id"] for t in tasks)
        # Two server processes under the supervisor, each with its own wake-up listener.
        assert len(await _listeners(postgres_only_url)) == 2
    finally:
        server.stop()


@pytest.mark.slow
async def test_server_processes_stop_when_serve_is_killed_outright(postgres_only_url, tmp_path):
    """uvicorn's server processes outlive a supervisor killed with SIGKILL; they stop by themselves instead, and
    free the port."""
    env = {"AINS_DATABASE_URL": postgres_only_url, "AINS_DATA_DIR": str(tmp_path / "data")}
    server = ServerProcess(env, ("--workers", "2"))
    servers: list[int] = []
    shared = ""
    try:
        servers = await started_server_processes(server.process.pid)
        # Killed outright, ains serve cannot remove its metrics directory: the test does.
        shared = process_environment(servers[0])["PROMETHEUS_MULTIPROC_DIR"]
        server.process.kill()
        server.process.wait()
        deadline = time.monotonic() + 15
        while any(running(pid) for pid in servers):
            assert time.monotonic() < deadline, "server processes kept running without their ains serve"
            await asyncio.sleep(0.1)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/health", timeout=2)
    finally:
        server.stop()
        for pid in servers:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        if shared:
            shutil.rmtree(shared, ignore_errors=True)


# -- within one process ------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"wakeup_fallback_seconds": 0.5}])
async def test_a_wakeup_nobody_can_use_does_not_spin(client):
    """A waiting claim woken for a task it may not take passes the wake-up down, not back to itself."""
    owner = await create_client(client)
    agent = await register_agent(client)
    waiting = asyncio.create_task(claim(client, agent, wait_seconds=2))
    await asyncio.sleep(0.2)
    before = sum(DB_STATEMENTS.labels(kind)._value.get() for kind in ("read", "write"))
    await submit(client, owner, min_trust_score=0.95)  # above the agent's 0.5
    assert await waiting == []
    spent = sum(DB_STATEMENTS.labels(kind)._value.get() for kind in ("read", "write")) - before
    # A few looks (the wake-up and the fallback polls), not a loop of claim transactions until the wait ends.
    assert spent < 60, spent


def test_payloads_stay_under_the_notify_limit_and_round_trip():
    announcements = [(TASK, f"cap{n}:v1", "") for n in range(2000)] + [(CACHE, "task", ",".join(["x" * 40] * 400))]
    payloads = encode("origin-1", announcements)
    assert len(payloads) > 1
    assert all(len(p.encode()) < 8000 for p in payloads)
    decoded = [item for payload in payloads for item in decode(payload)[1]]
    assert decoded[:2000] == announcements[:2000]
    # A key list too big for one notification becomes "anything of this kind may have changed".
    assert decoded[-1] == (CACHE, EVERYTHING, "")


def test_a_wakeup_walks_down_the_ranking_once():
    wakeups = Wakeups()
    with (
        wakeups.subscribe(["a:v1"], rank=0.9) as best,
        wakeups.subscribe(["a:v1"], rank=0.5) as middle,
        wakeups.subscribe(["a:v1"], rank=0.1) as last,
    ):
        wakeups.notify("a:v1")
        assert (best.is_set(), middle.is_set(), last.is_set()) == (True, False, False)
        best.clear()
        wakeups.pass_on(["a:v1"], passer=best)
        assert (best.is_set(), middle.is_set()) == (False, True)
        middle.clear()
        wakeups.pass_on(["a:v1"], passer=middle)
        last.clear()
        wakeups.pass_on(["a:v1"], passer=last)
        # Declined by everyone: nobody is woken again.
        assert not any(event.is_set() for event in (best, middle, last))


@pytest.mark.slow
async def test_a_worker_delivers_a_webhook_as_soon_as_a_server_records_its_event(postgres_only_url, tmp_path):
    """The event's delivery deadline reaches the worker's sleeping dispatcher through the wake-up link."""
    from tests.helpers import WorkerProcess
    from tests.webhooks.receiver import Receiver

    env = {
        "AINS_DATABASE_URL": postgres_only_url,
        "AINS_DATA_DIR": str(tmp_path / "data"),
        "AINS_WEBHOOK_ALLOW_PRIVATE": "true",
        "AINS_WEBHOOK_DISPATCH_INTERVAL_SECONDS": "60",
    } | SLOW_FALLBACK
    server = ServerProcess(env | {"AINS_RUN_BACKGROUND": "false"})
    worker = WorkerProcess(env)
    receiver = Receiver()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            _, owner = await _client_key(http)
            hook = {"url": receiver.url, "events": ["task.created"]}
            assert (await http.post("/ains/clients/client_1/webhooks", json=hook, headers=owner)).status_code == 201
            await asyncio.sleep(1)  # the worker's dispatcher has looked once and sleeps for a minute
            for _ in range(3):
                submitted_at = time.time()
                task = (await http.post("/ains/tasks", json=task_body(), headers=owner)).json()
                deadline = time.monotonic() + 20
                while not any(r.payload["task_id"] == task["task_id"] for r in receiver.requests):
                    assert time.monotonic() < deadline, "the worker's dispatcher was not woken"
                    await asyncio.sleep(0.02)
                arrived = next(r.at for r in receiver.requests if r.payload["task_id"] == task["task_id"])
                print(f"event to delivery through a worker: {(arrived - submitted_at) * 1000:.0f} ms")
    finally:
        receiver.close()
        worker.stop()
        server.stop()


async def test_the_listener_stops_when_told_to_as_it_is_woken(postgres_only_url):
    # On Python 3.11 asyncio.wait_for swallowed a cancellation arriving as its event was set: the listener then
    # went on serving, and the server's shutdown waited on it forever.
    from ains.core.listener import WakeupListener

    wakeups = Wakeups()
    listener = WakeupListener(postgres_only_url, wakeups, check_seconds=60)
    listener.start()
    try:
        for _ in range(100):
            if wakeups.connected:
                break
            await asyncio.sleep(0.05)
        assert wakeups.connected
        await asyncio.sleep(0.1)  # the listener is waiting for something to publish
        assert wakeups.publish is not None
        wakeups.publish([(TASK, "anything", "")])
        stopping = asyncio.ensure_future(listener.stop())
        done, _ = await asyncio.wait({stopping}, timeout=WAIT_SECONDS)
        assert stopping in done, "the listener did not stop"
    finally:
        if listener._task is not None:
            listener._task.cancel()
