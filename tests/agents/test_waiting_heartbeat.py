"""SPEC 14: a heartbeat held open with `wait_seconds` answers as soon as one of the agent's tasks is cancelled.

The fallback look-again is set far above the waits, so an early answer can only come from the wake-up.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers import claim, create_client, register_agent, submit

WAIT_SECONDS = 30


@pytest.fixture
def settings_overrides():
    return {"wakeup_fallback_seconds": 60, "agent_stale_seconds": 300}


async def _heartbeat(client, agent, wait_seconds: float, **body) -> dict:
    response = await client.post(
        f"/ains/agents/{agent.agent_id}/heartbeat", json={"wait_seconds": wait_seconds, **body}, headers=agent.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_cancel_answers_a_waiting_heartbeat_at_once(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    task = await submit(client, owner)
    await claim(client, agent)
    waiting = asyncio.create_task(_heartbeat(client, agent, WAIT_SECONDS))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # nothing cancelled yet: it waits
    response = await client.post(f"/ains/tasks/{task['task_id']}/cancel", headers=owner)
    assert response.status_code == 200, response.text
    started = time.monotonic()
    answer = await asyncio.wait_for(waiting, WAIT_SECONDS / 2)
    print(f"cancel reached the waiting heartbeat in {(time.monotonic() - started) * 1000:.0f} ms")
    assert answer["cancelled_task_ids"] == [task["task_id"]]
    # Each cancellation is told once.
    assert (await _heartbeat(client, agent, 0))["cancelled_task_ids"] == []


async def test_an_earlier_cancel_answers_at_once(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    task = await submit(client, owner)
    await claim(client, agent)
    await client.post(f"/ains/tasks/{task['task_id']}/cancel", headers=owner)
    answer = await asyncio.wait_for(_heartbeat(client, agent, WAIT_SECONDS), WAIT_SECONDS / 2)
    assert answer["cancelled_task_ids"] == [task["task_id"]]


async def test_without_a_cancel_it_answers_when_the_wait_ends(client):
    agent = await register_agent(client, "agent_1")
    started = time.monotonic()
    answer = await _heartbeat(client, agent, 0.5, status="BUSY")
    assert time.monotonic() - started >= 0.5
    assert answer["acknowledged"] is True and answer["cancelled_task_ids"] == []
    assert (await client.get("/ains/agents/agent_1")).json()["status"] == "BUSY"


async def test_another_agents_cancel_does_not_answer_it(client):
    owner = await create_client(client)
    mine = await register_agent(client, "agent_mine")
    other = await register_agent(client, "agent_other")
    task = await submit(client, owner)
    await claim(client, other)
    waiting = asyncio.create_task(_heartbeat(client, mine, 1))
    await asyncio.sleep(0.2)
    await client.post(f"/ains/tasks/{task['task_id']}/cancel", headers=owner)
    assert (await waiting)["cancelled_task_ids"] == []
    assert (await _heartbeat(client, other, 0))["cancelled_task_ids"] == [task["task_id"]]


@pytest.mark.parametrize("wait_seconds", [-1, 31, "5", None, True])
async def test_a_bad_wait_is_refused_naming_the_field(client, wait_seconds):
    agent = await register_agent(client, "agent_1")
    response = await client.post(
        "/ains/agents/agent_1/heartbeat", json={"wait_seconds": wait_seconds}, headers=agent.headers
    )
    assert response.status_code == 422, response.text
    assert "wait_seconds" in response.text


async def test_an_agent_cannot_wait_on_anothers_heartbeat(client):
    await register_agent(client, "agent_1")
    intruder = await register_agent(client, "agent_2")
    response = await client.post("/ains/agents/agent_1/heartbeat", json={"wait_seconds": 1}, headers=intruder.headers)
    assert response.status_code == 403
