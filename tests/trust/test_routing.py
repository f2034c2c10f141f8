"""SPEC 8 routing: min_trust_score, very_low claims nothing, low is on probation,
and among waiting claims the highest trust score gets the task."""

import asyncio

import pytest

from tests.helpers import ADMIN, claim, create_client, register_agent, submit


@pytest.fixture
def settings_overrides():
    # Waiting claims look again on their own only every 30 s, so only wake-ups decide who gets a task.
    return {"wakeup_fallback_seconds": 30}


async def set_score(client, agent_id, score):
    url = f"/ains/agents/{agent_id}/trust/adjust"
    await client.post(url, json={"delta": -1.0, "reason": "reset"}, headers=ADMIN)
    await client.post(url, json={"delta": score, "reason": "set"}, headers=ADMIN)


async def test_min_trust_score_keeps_a_task_from_lower_agents(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    task = await submit(client, owner, min_trust_score=0.8)
    assert await claim(client, agent) == []
    await set_score(client, "agent_1", 0.8)
    assert [t["task_id"] for t in await claim(client, agent)] == [task["task_id"]]


async def test_very_low_claims_nothing_and_says_why(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    await submit(client, owner)
    await set_score(client, "agent_1", 0.29)
    response = await client.post("/ains/agents/agent_1/tasks/claim", json={"wait_seconds": 5}, headers=agent.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["tasks"] == [] and "very_low" in body["reason"]
    assert "very_low" in response.headers["X-AINS-Claim-Limit"]
    await set_score(client, "agent_1", 0.5)
    ok = await client.post("/ains/agents/agent_1/tasks/claim", json={}, headers=agent.headers)
    assert len(ok.json()["tasks"]) == 1 and ok.json()["reason"] is None
    assert "X-AINS-Claim-Limit" not in ok.headers


async def test_low_is_one_task_at_a_time_and_priority_at_most_7(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1", max_concurrency=10)
    urgent = await submit(client, owner, priority=9)
    first = await submit(client, owner, priority=7)
    second = await submit(client, owner, priority=5)
    await set_score(client, "agent_1", 0.4)
    response = await client.post("/ains/agents/agent_1/tasks/claim", json={"max_tasks": 5}, headers=agent.headers)
    assert [t["task_id"] for t in response.json()["tasks"]] == [first["task_id"]]
    assert "probation" in response.json()["reason"]
    assert await claim(client, agent, max_tasks=5) == []
    await client.post(f"/ains/tasks/{first['task_id']}/start", headers=agent.headers)
    await client.post(f"/ains/tasks/{first['task_id']}/complete", headers=agent.headers)
    assert [t["task_id"] for t in await claim(client, agent, max_tasks=5)] == [second["task_id"]]
    pending = (await client.get(f"/ains/tasks/{urgent['task_id']}", headers=owner)).json()
    assert pending["status"] == "PENDING"


async def test_the_most_trusted_waiting_agent_gets_the_task(client):
    owner = await create_client(client)
    modest = await register_agent(client, "agent_modest")
    trusted = await register_agent(client, "agent_trusted")
    await set_score(client, "agent_modest", 0.6)
    await set_score(client, "agent_trusted", 0.95)
    for _ in range(3):
        # The less trusted agent starts waiting first, so arrival order would favour it.
        modest_wait = asyncio.create_task(claim(client, modest, wait_seconds=3))
        await asyncio.sleep(0.2)
        trusted_wait = asyncio.create_task(claim(client, trusted, wait_seconds=3))
        await asyncio.sleep(0.2)
        task = await submit(client, owner)
        got = await trusted_wait
        assert [t["task_id"] for t in got] == [task["task_id"]]
        assert await modest_wait == []
        await client.post(f"/ains/tasks/{task['task_id']}/start", headers=trusted.headers)
        await client.post(f"/ains/tasks/{task['task_id']}/complete", headers=trusted.headers)


async def test_a_waiting_agent_that_may_not_take_the_task_passes_it_on(client):
    owner = await create_client(client)
    picky = await register_agent(client, "agent_picky")
    able = await register_agent(client, "agent_able")
    await set_score(client, "agent_picky", 0.95)
    await set_score(client, "agent_able", 0.6)
    # agent_picky is full: it is woken first but cannot take the task, so agent_able must get it.
    await client.patch("/ains/agents/agent_picky", json={"max_concurrency": 1}, headers=picky.headers)
    await submit(client, owner)
    await claim(client, picky)
    able_wait = asyncio.create_task(claim(client, able, wait_seconds=5))
    picky_wait = asyncio.create_task(claim(client, picky, wait_seconds=3))
    await asyncio.sleep(0.2)
    task = await submit(client, owner)
    assert [t["task_id"] for t in await able_wait] == [task["task_id"]]
    assert await picky_wait == []
