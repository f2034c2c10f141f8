"""SPEC 3: claim order, limits, eligibility, exclusivity under concurrency, and long polling."""

import asyncio
import time

from tests.helpers import ADMIN, claim, create_client, register_agent, submit


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
