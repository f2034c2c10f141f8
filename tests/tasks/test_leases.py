"""SPEC 3 leases: an ASSIGNED task not started within assign_lease_seconds goes back to PENDING, no retry used.

Time is the test's own clock: the lease runs out when the test moves the clock, never
because a loaded machine was slow between a claim and its start.
"""

import pytest

from tests.helpers import claim, create_client, register_agent, submit, wait_for

LEASE = 30


@pytest.fixture
def settings_overrides():
    return {"assign_lease_seconds": LEASE, "timeout_check_seconds": 0.1}


async def test_unstarted_task_returns_to_the_queue_and_fencing_stops_the_late_start(clock, client):
    owner = await create_client(client)
    slow = await register_agent(client, "agent_slow")
    quick = await register_agent(client, "agent_quick")
    task = await submit(client, owner)
    (claimed,) = await claim(client, slow)

    async def pending():
        current = (await client.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()
        return current if current["status"] == "PENDING" else None

    clock.advance(LEASE - 1)
    assert await wait_for(pending, timeout=0.5) is None  # still within its lease
    clock.advance(1)
    back = await wait_for(pending, timeout=10)
    assert back and back["retry_count"] == 0 and back["assigned_agent_id"] is None
    assert back["available_at"] == task["available_at"]  # keeps its place in the queue
    (attempt,) = (await client.get(f"/ains/tasks/{task['task_id']}/attempts", headers=owner)).json()["attempts"]
    assert attempt["outcome"] == "lease_expired"

    (again,) = await claim(client, quick)
    assert again["attempt"] == 2
    late = await client.post(
        f"/ains/tasks/{task['task_id']}/start", json={"attempt": claimed["attempt"]}, headers=slow.headers
    )
    assert late.status_code == 409
    started = await client.post(f"/ains/tasks/{task['task_id']}/start", json={"attempt": 2}, headers=quick.headers)
    assert started.status_code == 200 and started.json()["status"] == "ACTIVE"


async def test_started_tasks_keep_their_lease(clock, client):
    owner = await create_client(client)
    agent = await register_agent(client)
    task = await submit(client, owner, timeout_seconds=3600)
    await claim(client, agent, start=True)
    clock.advance(LEASE * 2)  # well past the lease, within the agent's heartbeat allowance (90 s)
    changed = await wait_for(lambda: _not_active(client, owner, task["task_id"]), timeout=0.5)
    assert not changed


async def _not_active(client, headers, task_id):
    return (await client.get(f"/ains/tasks/{task_id}", headers=headers)).json()["status"] != "ACTIVE"
