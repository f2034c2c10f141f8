"""SPEC 3 leases: an ASSIGNED task not started within assign_lease_seconds goes back to PENDING, no retry used."""

import pytest

from tests.helpers import claim, create_client, register_agent, submit, wait_for


@pytest.fixture
def settings_overrides():
    return {"assign_lease_seconds": 0.5, "timeout_check_seconds": 0.2}


async def test_unstarted_task_returns_to_the_queue_and_fencing_stops_the_late_start(client):
    owner = await create_client(client)
    slow = await register_agent(client, "agent_slow")
    quick = await register_agent(client, "agent_quick")
    task = await submit(client, owner)
    (claimed,) = await claim(client, slow)

    async def pending():
        current = (await client.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()
        return current if current["status"] == "PENDING" else None

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


async def test_started_tasks_keep_their_lease(client):
    owner = await create_client(client)
    agent = await register_agent(client)
    task = await submit(client, owner)
    await claim(client, agent, start=True)
    changed = await wait_for(lambda: _not_active(client, owner, task["task_id"]), timeout=1.5)
    assert not changed


async def _not_active(client, headers, task_id):
    return (await client.get(f"/ains/tasks/{task_id}", headers=headers)).json()["status"] != "ACTIVE"
