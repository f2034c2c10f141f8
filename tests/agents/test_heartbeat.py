"""SPEC 7: the heartbeat records the agent alive, sets the status it reports, and tells each cancelled task once."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import claim, create_client, register_agent, statements_seen, submit


async def _beat(client, agent, **body) -> list[str]:
    response = await client.post(f"/ains/agents/{agent.agent_id}/heartbeat", json=body, headers=agent.headers)
    assert response.status_code == 200, response.text
    return response.json()["cancelled_task_ids"]


async def _held_and_cancelled(client, count: int):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1", max_concurrency=count)
    for _ in range(count):
        await submit(client, owner)
    held = [task["task_id"] for task in await claim(client, agent, max_tasks=count)]
    return owner, agent, held


async def test_a_heartbeat_sets_its_status_and_tells_cancels_once_in_the_order_they_came(client):
    owner, agent, held = await _held_and_cancelled(client, 3)
    order = [held[2], held[0], held[1]]
    for task_id in order:
        assert (await client.post(f"/ains/tasks/{task_id}/cancel", headers=owner)).status_code == 200
    assert await _beat(client, agent, status="BUSY") == order
    assert (await client.get(f"/ains/agents/{agent.agent_id}")).json()["status"] == "BUSY"
    assert await _beat(client, agent) == []  # told once
    assert (await client.get(f"/ains/agents/{agent.agent_id}")).json()["status"] == "BUSY"  # kept when not given


async def test_concurrent_heartbeats_tell_each_cancel_once(client):
    owner, agent, held = await _held_and_cancelled(client, 5)
    for task_id in held:
        assert (await client.post(f"/ains/tasks/{task_id}/cancel", headers=owner)).status_code == 200
    told = await asyncio.gather(*(_beat(client, agent) for _ in range(6)))
    assert sorted(task_id for answer in told for task_id in answer) == sorted(held)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize("settings_overrides", [{"run_background": False}])  # no duty's statements in the count
async def test_a_heartbeat_is_two_plain_statements_on_postgres(client, db):
    """The agent's row and the cancelled tasks, each one UPDATE … RETURNING on the driver's connection: no ORM
    object loaded and flushed."""
    owner, agent, held = await _held_and_cancelled(client, 2)
    await client.post(f"/ains/tasks/{held[0]}/cancel", headers=owner)
    async with statements_seen(db.engine) as seen:
        assert await _beat(client, agent) == [held[0]]
    assert seen.through_sqlalchemy == []
    work = seen.work()
    assert len(work) == 2, work
    assert work[0].startswith("UPDATE agents SET last_heartbeat_at") and work[1].startswith("UPDATE tasks SET")
