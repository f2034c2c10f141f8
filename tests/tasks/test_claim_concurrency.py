"""Claims are exclusive across concurrent claimers of real server processes.

500 tasks, 20 agents each claiming from two loops at once through HTTP, spread
over two `ains serve` processes sharing one database (PostgreSQL, and SQLite's
file): every task is assigned exactly once, and no agent ever holds more than
its `max_concurrency` (checked from the servers' own attempt times).
"""

import asyncio
from collections import Counter

import httpx
import pytest
from sqlalchemy import select

from ains.core.database import Database
from ains.identity import Identity
from ains.tasks.models import Task, TaskAttempt
from tests.helpers import ADMIN, ServerProcess, bearer, task_body

TASKS = 500
AGENTS = 20
MAX_CONCURRENCY = 3


async def _stored(database_url: str) -> tuple[Counter[str], list[TaskAttempt]]:
    """What the servers wrote: how many tasks are in each status, and every attempt row."""
    db = Database(database_url)
    try:
        async with db.read() as session:
            statuses = Counter((await session.scalars(select(Task.status))).all())
            attempts = list(await session.scalars(select(TaskAttempt)))
    finally:
        await db.dispose()
    return statuses, attempts


@pytest.fixture
def servers(settings):
    env = {"AINS_DATABASE_URL": settings.database_url, "AINS_DATA_DIR": str(settings.data_dir)}
    processes = [ServerProcess(env), ServerProcess(env)]
    yield processes
    for process in processes:
        process.stop()


def _clients(servers) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    """One HTTP client for each of the two servers."""
    limits = httpx.Limits(max_connections=100)
    first, second = (httpx.AsyncClient(base_url=s.url, timeout=60, limits=limits) for s in servers)
    return first, second


async def _owner_and_agents(
    http: httpx.AsyncClient, served: dict[str, list[str]], max_concurrency: int
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """A client's headers, and each agent's (registered to serve its capabilities) by agent id."""
    key = (await http.post("/ains/api-keys", json={"client_id": "client_1", "name": "load"}, headers=ADMIN)).json()
    agents = {}
    for agent_id, capabilities in served.items():
        body = Identity.generate().registration(agent_id) | {
            "capabilities": capabilities,
            "max_concurrency": max_concurrency,
        }
        agents[agent_id] = bearer((await http.post("/ains/agents", json=body)).json()["api_key"])
    return bearer(key["api_key"]), agents


@pytest.mark.slow
async def test_500_tasks_20_claimers_each_assigned_once(servers, settings):
    first, second = _clients(servers)
    async with first as http, second as other_http:
        served = {f"agent_{n:02d}": ["data:v1"] for n in range(AGENTS)}
        owner, agents = await _owner_and_agents(http, served, MAX_CONCURRENCY)

        async def submit_range(start: int) -> None:
            for i in range(start, TASKS, 10):
                response = await http.post("/ains/tasks", json=task_body(input_data={"i": i}), headers=owner)
                assert response.status_code == 201

        await asyncio.gather(*(submit_range(s) for s in range(10)))

        claimed: list[str] = []

        async def claimer(agent_id: str, http: httpx.AsyncClient) -> None:
            headers = agents[agent_id]
            while True:
                response = await http.post(
                    f"/ains/agents/{agent_id}/tasks/claim", json={"max_tasks": 5}, headers=headers
                )
                assert response.status_code == 200, response.text
                tasks = response.json()["tasks"]
                if not tasks:
                    return
                assert len(tasks) <= MAX_CONCURRENCY
                for task in tasks:
                    claimed.append(task["task_id"])
                    attempt = task["attempt"]
                    started = await http.post(
                        f"/ains/tasks/{task['task_id']}/start", json={"attempt": attempt}, headers=headers
                    )
                    assert started.status_code == 200, started.text
                    done = await http.post(
                        f"/ains/tasks/{task['task_id']}/complete", json={"attempt": attempt}, headers=headers
                    )
                    assert done.status_code == 200, done.text

        # Each agent claims through both servers at once.
        await asyncio.gather(*(claimer(a, h) for a in agents for h in (http, other_http)))

    duplicates = [task_id for task_id, count in Counter(claimed).items() if count > 1]
    assert duplicates == [] and len(claimed) == TASKS

    statuses, attempts = await _stored(settings.database_url)
    assert statuses == {"COMPLETED": TASKS}
    assert len(attempts) == TASKS and len({a.task_id for a in attempts}) == TASKS

    by_agent: dict[str, list[TaskAttempt]] = {}
    for attempt in attempts:
        by_agent.setdefault(attempt.agent_id, []).append(attempt)
    assert len(by_agent) > 1  # the work really was shared
    for agent_id, rows in by_agent.items():
        for row in rows:
            held = sum(1 for r in rows if r.assigned_at <= row.assigned_at < r.finished_at or r is row)
            assert held <= MAX_CONCURRENCY, (agent_id, row.task_id, held)


@pytest.mark.slow
async def test_agents_of_several_capabilities_share_a_mixed_queue_each_task_once(servers, settings):
    """Agents serving two or three capabilities claim from a queue mixing three: the claim walks each capability
    and merges the heads, locking rows it may then leave. No task is assigned twice or left behind."""
    capabilities = ["a:v1", "b:v1", "c:v1"]
    tasks_total = 240
    first, second = _clients(servers)
    async with first as http, second as other_http:
        served = {
            f"agent_{n:02d}": [capabilities[n % 3], capabilities[(n + 1) % 3]]
            + ([capabilities[(n + 2) % 3]] if n % 4 == 0 else [])
            for n in range(12)
        }
        owner, agents = await _owner_and_agents(http, served, 4)
        batch = [task_body(capability_required=capabilities[i % 3], input_data={"i": i}) for i in range(tasks_total)]
        for start in range(0, tasks_total, 80):
            response = await http.post("/ains/tasks/batch", json={"tasks": batch[start : start + 80]}, headers=owner)
            assert response.status_code == 200, response.text

        claimed: list[str] = []
        deadline = asyncio.get_running_loop().time() + 120

        async def claimer(agent_id: str, client: httpx.AsyncClient) -> None:
            headers = agents[agent_id]
            while len(claimed) < tasks_total and asyncio.get_running_loop().time() < deadline:
                response = await client.post(
                    f"/ains/agents/{agent_id}/tasks/claim", json={"max_tasks": 2, "start": True}, headers=headers
                )
                assert response.status_code == 200, response.text
                for task in response.json()["tasks"]:
                    claimed.append(task["task_id"])
                    done = await client.post(
                        f"/ains/tasks/{task['task_id']}/complete", json={"attempt": task["attempt"]}, headers=headers
                    )
                    assert done.status_code == 200, done.text
                if not response.json()["tasks"]:
                    await asyncio.sleep(0.05)  # a row another claim locked and left is free again in a moment

        await asyncio.gather(*(claimer(a, h) for a in agents for h in (http, other_http)))

    assert [task_id for task_id, count in Counter(claimed).items() if count > 1] == []
    assert len(claimed) == tasks_total
    statuses, attempts = await _stored(settings.database_url)
    assert statuses == {"COMPLETED": tasks_total}
    assert len(attempts) == tasks_total
