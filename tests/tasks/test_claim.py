"""SPEC 3: claim order, limits, eligibility, exclusivity under concurrency, and long polling."""

import asyncio
import time

import pytest
from sqlalchemy import select

from ains.core.metrics import DB_STATEMENTS
from ains.tasks.models import Task
from tests.helpers import ADMIN, claim, create_client, register_agent, statements_seen, submit


async def test_claims_take_higher_priority_first_then_fifo(client):
    owner = await create_client(client)
    agent = await register_agent(client, max_concurrency=10)
    low = await submit(client, owner, priority=2)
    high_1 = await submit(client, owner, priority=9)
    mid = await submit(client, owner, priority=5)
    high_2 = await submit(client, owner, priority=9)
    got = [t["task_id"] for t in await claim(client, agent, max_tasks=10)]
    assert got == [high_1["task_id"], high_2["task_id"], mid["task_id"], low["task_id"]]


async def test_claim_respects_max_tasks_and_max_concurrency(client):
    owner = await create_client(client)
    agent = await register_agent(client, max_concurrency=3)
    for _ in range(6):
        await submit(client, owner)
    assert len(await claim(client, agent)) == 1
    assert len(await claim(client, agent, max_tasks=5)) == 2
    assert await claim(client, agent, max_tasks=5) == []
    held = (await client.get("/ains/tasks", params={"status": "ASSIGNED"}, headers=agent.headers)).json()["tasks"]
    await client.post(f"/ains/tasks/{held[0]['task_id']}/start", headers=agent.headers)
    await client.post(f"/ains/tasks/{held[0]['task_id']}/complete", headers=agent.headers)
    assert len(await claim(client, agent, max_tasks=5)) == 1


async def test_claim_only_matching_capabilities_and_trust(client):
    owner = await create_client(client)
    agent = await register_agent(client, capabilities=["data:v1"])
    await submit(client, owner, capability_required="image:v1")
    await submit(client, owner, min_trust_score=0.6)
    eligible = await submit(client, owner, min_trust_score=0.5)
    assert [t["task_id"] for t in await claim(client, agent, max_tasks=5)] == [eligible["task_id"]]


async def test_claim_with_start_makes_tasks_active(client):
    owner = await create_client(client)
    agent = await register_agent(client)
    await submit(client, owner)
    (task,) = await claim(client, agent, start=True)
    assert task["status"] == "ACTIVE" and task["started_at"] is not None
    (attempt,) = (await client.get(f"/ains/tasks/{task['task_id']}/attempts", headers=owner)).json()["attempts"]
    assert attempt["started_at"] == task["started_at"]


async def test_claim_is_for_oneself_only(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    other = await register_agent(client, "agent_2")
    await submit(client, owner)
    for headers in (other.headers, owner, ADMIN):
        response = await client.post("/ains/agents/agent_1/tasks/claim", json={}, headers=headers)
        assert response.status_code == 403
    assert (await client.post("/ains/agents/agent_1/tasks/claim", json={})).status_code == 401
    for bad in ({"max_tasks": 0}, {"max_tasks": 51}, {"wait_seconds": 31}, {"wait_seconds": -1}, {"start": "yes"}):
        response = await client.post("/ains/agents/agent_1/tasks/claim", json=bad, headers=agent.headers)
        assert response.status_code == 422, bad
    assert (await client.get("/ains/tasks", params={"status": "PENDING"}, headers=owner)).json()["tasks"]


async def test_concurrent_claimers_never_share_a_task(client):
    owner = await create_client(client)
    agents = [await register_agent(client, f"agent_{n}", max_concurrency=50) for n in range(8)]
    for _ in range(60):
        await submit(client, owner)
    results = await asyncio.gather(*(claim(client, a, max_tasks=10) for a in agents for _ in range(2)))
    ids = [t["task_id"] for batch in results for t in batch]
    assert len(ids) == 60 and len(set(ids)) == 60


async def test_long_poll_wakes_when_a_task_arrives(client):
    owner = await create_client(client)
    agent = await register_agent(client)
    started = time.monotonic()
    waiting = asyncio.create_task(claim(client, agent, wait_seconds=20))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    task = await submit(client, owner)
    claimed = await asyncio.wait_for(waiting, timeout=20)
    elapsed = time.monotonic() - started
    assert [t["task_id"] for t in claimed] == [task["task_id"]]
    # Woken by the submission, not by the end of its 20 s wait.
    assert elapsed < 10


async def test_long_poll_ignores_other_capabilities_and_returns_empty(client):
    owner = await create_client(client)
    agent = await register_agent(client, capabilities=["data:v1"])
    started = time.monotonic()
    waiting = asyncio.create_task(claim(client, agent, wait_seconds=1))
    await asyncio.sleep(0.1)
    await submit(client, owner, capability_required="image:v1")
    assert await waiting == []
    assert time.monotonic() - started >= 1


def _statements() -> float:
    return sum(DB_STATEMENTS.labels(kind)._value.get() for kind in ("read", "write"))


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize("settings_overrides", [{"run_background": False}])
async def test_a_claim_is_two_statements_on_postgres(client, db):
    """The heartbeat that locks the agent, then one statement that counts what the agent holds, picks, assigns and
    writes the attempt rows (BEGIN and COMMIT aside; no webhook hears the claim, and the agent's key is cached)."""
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1", max_concurrency=3)
    for _ in range(4):
        await submit(client, owner)
    assert (await client.get("/ains/tasks", headers=agent.headers)).status_code == 200  # the key, read once
    async with statements_seen(db.engine) as seen:
        first = await claim(client, agent, max_tasks=2)
        second = await claim(client, agent, max_tasks=2)  # one more fits max_concurrency 3
        third = await claim(client, agent, max_tasks=2)  # none: the agent holds three
    assert (len(first), len(second), len(third)) == (2, 1, 0)
    # The claim's transaction runs on the driver's connection, past SQLAlchemy's session (a lean transaction).
    assert seen.through_sqlalchemy == []
    work = seen.work()
    assert len(work) == 6, [sql[:90] for sql in work]
    assert all(sql.startswith("UPDATE agents SET last_heartbeat_at") for sql in work[::2]), work
    assert all(sql.startswith("WITH budget AS") for sql in work[1::2]), work


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": True, "run_background": False}])
async def test_a_claim_picks_and_assigns_in_one_statement_on_postgres(client, backend, db):
    """On PostgreSQL one UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED) RETURNING assigns the whole claim, so a
    claim of 40 costs what a claim of 1 does; the rows it returns carry every field a claim sets."""
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1", max_concurrency=100)
    hook = {"url": "http://127.0.0.1:9/h", "events": ["task.assigned", "task.started"]}
    assert (await client.post("/ains/clients/client_1/webhooks", json=hook, headers=owner)).status_code == 201
    submitted = [await submit(client, owner, priority=1 + n % 10) for n in range(41)]
    # The agent's key is then known to the process (its first use reads it from the database).
    assert (await client.get("/ains/tasks", headers=agent.headers)).status_code == 200
    costs = []
    claimed = []
    async with statements_seen(db.engine) as statements:
        for size in (1, 40):
            before = _statements()
            claimed += await claim(client, agent, max_tasks=size, start=True)
            costs.append(_statements() - before)
    seen = statements.work()
    if backend.name == "postgres":
        # (SQLite inserts attempt rows one statement each: it cannot match generated ids to a multi-row insert.)
        assert costs[0] == costs[1], costs
        touching = [sql for sql in seen if "FOR UPDATE SKIP LOCKED" in sql or sql.startswith("UPDATE tasks")]
        assert len(touching) == 2, touching  # one per claim
        for sql in touching:
            assert sql.startswith("WITH budget AS (SELECT") and "UPDATE tasks SET" in sql
            assert "FOR UPDATE SKIP LOCKED" in sql and "RETURNING" in sql
    assert sorted(t["task_id"] for t in claimed) == sorted(t["task_id"] for t in submitted)
    for task in claimed:
        assert task["status"] == "ACTIVE" and task["attempt"] == 1 and task["assigned_agent_id"] == "agent_1"
        assert task["started_at"] is not None and task["assigned_at"] == task["started_at"]
    async with db.read() as session:
        rows = list(await session.scalars(select(Task)))
    for row in rows:
        assert row.lease_expires_at is None and row.next_retry_at is None
        assert (row.deadline_at - row.started_at).total_seconds() == row.timeout_seconds
    # Queue order holds inside one claim too: highest effective priority first.
    priorities = [t["priority"] for t in claimed[1:]]
    assert priorities == sorted(priorities, reverse=True)
    history = (await client.get(f"/ains/tasks/{claimed[5]['task_id']}/attempts", headers=owner)).json()
    assert [(a["attempt"], a["agent_id"], a["started_at"] is not None) for a in history["attempts"]] == [
        (1, "agent_1", True)
    ]
    fresh = (await client.get(f"/ains/tasks/{claimed[5]['task_id']}", headers=owner)).json()
    assert fresh["status"] == "ACTIVE", "the task cache was told of the claim"
