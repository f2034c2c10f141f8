"""SPEC 2 liveness: a silent agent becomes INACTIVE; its ASSIGNED tasks requeue without a retry,
its ACTIVE tasks fail with `agent lost` and follow the retry rules."""

import pytest

from tests.helpers import claim, create_client, register_agent, submit, wait_for


@pytest.fixture
def settings_overrides():
    return {
        "agent_stale_seconds": 1,
        "timeout_check_seconds": 0.2,
        "assign_lease_seconds": 600,
        "retry_exponential_base_seconds": 0,
    }


async def test_lost_agent_gives_its_tasks_back(client):
    owner = await create_client(client)
    lost = await register_agent(client, "agent_lost")
    assigned = await submit(client, owner, priority=9)
    active = await submit(client, owner, priority=8)
    final = await submit(client, owner, priority=7, max_retries=0)
    tasks = await claim(client, lost, max_tasks=3)
    assert [t["task_id"] for t in tasks] == [assigned["task_id"], active["task_id"], final["task_id"]]
    for task in tasks[1:]:
        await client.post(f"/ains/tasks/{task['task_id']}/start", headers=lost.headers)

    async def inactive():
        return (await client.get("/ains/agents/agent_lost")).json()["status"] == "INACTIVE"

    assert await wait_for(inactive, timeout=10)

    async def get(task):
        return (await client.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()

    requeued = await get(assigned)
    assert requeued["status"] == "PENDING" and requeued["retry_count"] == 0
    retried = await get(active)
    assert retried["status"] == "PENDING" and retried["retry_count"] == 1 and retried["last_error"] == "agent lost"
    failed = await get(final)
    assert failed["status"] == "FAILED" and failed["error_message"] == "agent lost"
    history = (await client.get(f"/ains/tasks/{active['task_id']}/attempts", headers=owner)).json()["attempts"]
    assert history[0]["outcome"] == "agent_lost" and history[0]["error"] == "agent lost"

    # Coming back (a heartbeat or a claim) makes it available again.
    response = await client.post("/ains/agents/agent_lost/heartbeat", headers=lost.headers)
    assert response.status_code == 200
    assert (await client.get("/ains/agents/agent_lost")).json()["status"] == "AVAILABLE"


async def test_heartbeats_keep_an_agent_alive(client):
    agent = await register_agent(client, "agent_alive")

    async def beat_and_check():
        await client.post("/ains/agents/agent_alive/heartbeat", headers=agent.headers)
        return (await client.get("/ains/agents/agent_alive")).json()["status"] == "INACTIVE"

    assert not await wait_for(beat_and_check, timeout=2.5, interval=0.3)
