"""Background duties scale out: a server and two `ains worker` processes on one PostgreSQL
fail 200 timed-out tasks exactly once each (one attempt record, one log line across all processes)."""

from collections import Counter

import httpx
import pytest
from sqlalchemy import select

from ains.core.database import Database
from ains.identity import Identity
from ains.tasks.models import TaskAttempt
from tests.helpers import ADMIN, ServerProcess, WorkerProcess, bearer, task_body, wait_for

TASKS = 200


@pytest.mark.slow
async def test_two_workers_and_a_server_fail_each_timeout_once(postgres_only_url, tmp_path):
    env = {
        "AINS_DATABASE_URL": postgres_only_url,
        "AINS_DATA_DIR": str(tmp_path),
        "AINS_TIMEOUT_CHECK_SECONDS": "0.2",
        "AINS_LOG_LEVEL": "INFO",
    }
    server = ServerProcess(env)
    workers = [WorkerProcess(env), WorkerProcess(env)]
    processes = [server, *workers]
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            key = (await http.post("/ains/api-keys", json={"client_id": "client_1", "name": "t"}, headers=ADMIN)).json()
            owner = bearer(key["api_key"])
            agents = []
            for n in range(4):
                body = Identity.generate().registration(f"agent_{n}") | {
                    "capabilities": ["data:v1"],
                    "max_concurrency": 50,
                }
                agents.append((f"agent_{n}", bearer((await http.post("/ains/agents", json=body)).json()["api_key"])))
            for _ in range(TASKS):
                response = await http.post("/ains/tasks", json=task_body(timeout_seconds=1), headers=owner)
                assert response.status_code == 201
            started = 0
            for agent_id, headers in agents:
                response = await http.post(
                    f"/ains/agents/{agent_id}/tasks/claim", json={"max_tasks": 50, "start": True}, headers=headers
                )
                started += len(response.json()["tasks"])
            assert started == TASKS

            async def all_failed():
                page = await http.get("/ains/tasks", params={"status": "FAILED", "limit": 500}, headers=owner)
                return len(page.json()["tasks"]) == TASKS

            assert await wait_for(all_failed, timeout=30, interval=0.3)
    finally:
        for process in processes:
            process.stop_keeping_log()

    timed_out = Counter(
        line["task_id"]
        for process in processes
        for line in process.log_lines()
        if line.get("message") == "task timed out"
    )
    for process in processes:
        process.discard_log()
    assert len(timed_out) == TASKS and set(timed_out.values()) == {1}

    db = Database(postgres_only_url)
    try:
        async with db.read() as session:
            attempts = (await session.scalars(select(TaskAttempt))).all()
    finally:
        await db.dispose()
    assert len(attempts) == TASKS
    assert Counter(a.outcome for a in attempts) == {"timeout": TASKS}
