"""Every guarantee holds with several processes: two `ains serve` and one `ains worker` on one PostgreSQL.

Twelve agents, each with two loops, long-poll through either server; they start,
complete or fail (retryable, so tasks retry) what they get, and some never start
a task (its lease runs out) or start one and go quiet (it times out). At the end
every task is in exactly one final state, its attempt rows are numbered 1..n with
no gap or repeat and all finished, a completed task's result is its last
attempt's, every trust-moving outcome wrote exactly one trust record, and every
agent's trust chain verifies. (Exclusive claims and `max_concurrency` across
processes are tests/tasks/test_claim_concurrency.py's.)

The mix of outcomes raises trust on average (+0.02 a completion, -0.05 a
failure). With a third of attempts failing, most agents ended below 0.3, where
they claim nothing, and a loaded run stalled with tasks left.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict

import httpx
import pytest
from sqlalchemy import select

from ains.core.database import Database
from ains.identity import Identity
from ains.tasks.models import Task, TaskAttempt
from tests.helpers import ADMIN, ServerProcess, WorkerProcess, bearer, task_body

TASKS = 300
AGENTS = 12
MAX_CONCURRENCY = 4
FINAL = {"COMPLETED", "FAILED", "CANCELLED"}
STALL_SECONDS = 60


@pytest.mark.slow
async def test_two_servers_and_a_worker_keep_every_guarantee(postgres_only_url, tmp_path):
    env = {
        "AINS_DATABASE_URL": postgres_only_url,
        "AINS_DATA_DIR": str(tmp_path),
        "AINS_RUN_BACKGROUND": "false",  # the servers only serve; the worker runs every duty
        "AINS_RETRY_EXPONENTIAL_BASE_SECONDS": "0.05",
        "AINS_ASSIGN_LEASE_SECONDS": "2",
        "AINS_TIMEOUT_CHECK_SECONDS": "0.5",
    }
    servers = [ServerProcess(env), ServerProcess(env)]
    worker = WorkerProcess(env | {"AINS_RUN_BACKGROUND": "true"})
    rng = random.Random(7)
    limits = httpx.Limits(max_connections=100)
    try:
        clients = [httpx.AsyncClient(base_url=s.url, timeout=60, limits=limits) for s in servers]
        first = clients[0]
        key = await first.post("/ains/api-keys", json={"client_id": "client_1", "name": "t"}, headers=ADMIN)
        owner = bearer(key.json()["api_key"])
        agents: dict[str, dict[str, str]] = {}
        for n in range(AGENTS):
            agent_id = f"agent_{n:02d}"
            body = Identity.generate().registration(agent_id) | {
                "capabilities": ["data:v1"],
                "max_concurrency": MAX_CONCURRENCY,
            }
            agents[agent_id] = bearer((await clients[n % 2].post("/ains/agents", json=body)).json()["api_key"])

        async def submit(start: int) -> None:
            for i in range(start, TASKS, 6):
                body = task_body(input_data={"i": i}, max_retries=2, timeout_seconds=1)
                response = await clients[i % 2].post("/ains/tasks", json=body, headers=owner)
                assert response.status_code == 201, response.text

        async def unfinished() -> int:
            page = await first.get("/ains/queue/metrics", headers=owner)
            return sum(page.json()["tasks_by_priority"].values())

        stop = asyncio.Event()

        async def agent_loop(agent_id: str, headers: dict[str, str], loop: int) -> None:
            http = clients[loop % 2]
            while not stop.is_set():
                answer = await http.post(
                    f"/ains/agents/{agent_id}/tasks/claim", json={"max_tasks": 2, "wait_seconds": 1}, headers=headers
                )
                assert answer.status_code == 200, answer.text
                for task in answer.json()["tasks"]:
                    task_id, attempt = task["task_id"], task["attempt"]
                    roll = rng.random()
                    if roll < 0.05:
                        continue  # never started: the lease runs out
                    started = await http.post(
                        f"/ains/tasks/{task_id}/start", json={"attempt": attempt}, headers=headers
                    )
                    if started.status_code != 200:
                        assert started.status_code == 409, started.text  # the lease ran out first
                        continue
                    if roll < 0.08:
                        continue  # went quiet: the task times out
                    if roll < 0.20:
                        report = await http.post(
                            f"/ains/tasks/{task_id}/fail",
                            json={"attempt": attempt, "error_message": "flaky"},
                            headers=headers,
                        )
                    else:
                        report = await http.post(
                            f"/ains/tasks/{task_id}/complete",
                            json={"attempt": attempt, "result_data": {"by": agent_id}},
                            headers=headers,
                        )
                    assert report.status_code in (200, 409), report.text

        loops = [
            asyncio.create_task(agent_loop(agent_id, headers, loop))
            for agent_id, headers in agents.items()
            for loop in range(2)
        ]
        await asyncio.gather(*(submit(s) for s in range(6)))
        # A loaded machine may take minutes; what fails is a run where no task has finished for a while.
        left, last_progress = await unfinished(), time.monotonic()
        while left and time.monotonic() - last_progress < STALL_SECONDS:
            await asyncio.sleep(0.2)
            now_left = await unfinished()
            if now_left < left:
                left, last_progress = now_left, time.monotonic()
        stop.set()
        await asyncio.gather(*loops)
        scores = {a: (await first.get(f"/ains/agents/{a}/trust")).json()["trust_score"] for a in agents}
        assert await unfinished() == 0, f"stalled; trust scores (below 0.3 claims nothing): {scores}"

        verified = [
            (await first.get(f"/ains/agents/{agent_id}/trust/verify", headers=ADMIN)).json() for agent_id in agents
        ]
        assert all(v["valid"] for v in verified), verified
        for http in clients:
            await http.aclose()
    finally:
        for process in [*servers, worker]:
            process.stop()

    db = Database(postgres_only_url)
    try:
        async with db.read() as session:
            tasks = (await session.scalars(select(Task))).all()
            attempts = (await session.scalars(select(TaskAttempt).order_by(TaskAttempt.assigned_at))).all()
    finally:
        await db.dispose()
    assert len(tasks) == TASKS
    assert {t.status for t in tasks} <= FINAL
    by_task = defaultdict(list)
    for row in attempts:
        by_task[row.task_id].append(row)
    for task in tasks:
        rows = sorted(by_task[task.task_id], key=lambda r: r.attempt)
        assert [r.attempt for r in rows] == list(range(1, task.attempt + 1)), task.task_id
        assert all(r.finished_at is not None for r in rows), task.task_id
        if task.status == "COMPLETED":
            assert rows[-1].outcome == "completed" and task.result_data == {"by": rows[-1].agent_id}
    # Every attempt outcome that moves trust left exactly one record in its agent's chain.
    moving = sum(1 for row in attempts if row.outcome in ("completed", "failed", "timeout", "agent_lost"))
    assert sum(v["records_checked"] for v in verified) == moving
