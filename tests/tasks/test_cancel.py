"""SPEC 7 cancellation: from PENDING, ASSIGNED and ACTIVE; 409 after; the agent learns of it; audited; owners only."""

import pytest

from tests.helpers import ADMIN, claim, create_client, register_agent, submit


@pytest.fixture
async def world(client):
    owner = await create_client(client, "client_1")
    stranger = await create_client(client, "client_2")
    agent = await register_agent(client, "agent_1")
    return owner, stranger, agent


async def cancel(client, task_id, headers, reason="Client requested cancellation"):
    return await client.post(f"/ains/tasks/{task_id}/cancel", json={"reason": reason}, headers=headers)


@pytest.mark.parametrize("state", ["PENDING", "ASSIGNED", "ACTIVE"])
async def test_cancel_in_each_open_state(client, world, state):
    owner, _, agent = world
    task = await submit(client, owner)
    if state != "PENDING":
        await claim(client, agent, start=state == "ACTIVE")
    response = await cancel(client, task["task_id"], owner, "no longer needed")
    assert response.status_code == 200
    body = response.json()
    assert body["task_id"] == task["task_id"] and body["status"] == "CANCELLED"
    assert body["cancelled_by"] == "client_1" and body["cancellation_reason"] == "no longer needed"
    assert body["cancelled_at"].endswith("Z")
    stored = (await client.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()
    assert stored["status"] == "CANCELLED" and stored["cancelled_at"] == body["cancelled_at"]
    again = await cancel(client, task["task_id"], owner)
    assert again.status_code == 409 and "CANCELLED" in again.json()["detail"]
    if state == "PENDING":
        assert await claim(client, agent) == []
    else:
        history = (await client.get(f"/ains/tasks/{task['task_id']}/attempts", headers=owner)).json()["attempts"]
        assert history[-1]["outcome"] == "cancelled"
    audit = (await client.get("/ains/audit-logs", params={"action": "task.cancel"}, headers=ADMIN)).json()["entries"]
    assert [(e["actor"], e["target_id"], e["details"]["reason"]) for e in audit] == [
        ("client_1", task["task_id"], "no longer needed")
    ]


async def test_the_agent_learns_of_it_by_heartbeat_and_by_409(client, world):
    owner, _, agent = world
    task = await submit(client, owner)
    await claim(client, agent, start=True)
    await cancel(client, task["task_id"], owner)
    beat = (await client.post("/ains/agents/agent_1/heartbeat", headers=agent.headers)).json()
    assert beat["cancelled_task_ids"] == [task["task_id"]]
    # Told once.
    assert (await client.post("/ains/agents/agent_1/heartbeat", headers=agent.headers)).json()[
        "cancelled_task_ids"
    ] == []
    for action, body in (("start", {}), ("complete", {"result_data": {}}), ("fail", {"error_message": "x"})):
        response = await client.post(f"/ains/tasks/{task['task_id']}/{action}", json=body, headers=agent.headers)
        assert response.status_code == 409 and "CANCELLED" in response.json()["detail"]


async def test_final_tasks_cannot_be_cancelled(client, world):
    owner, _, agent = world
    task = await submit(client, owner)
    await claim(client, agent, start=True)
    await client.post(f"/ains/tasks/{task['task_id']}/complete", headers=agent.headers)
    response = await cancel(client, task["task_id"], owner)
    assert response.status_code == 409 and "COMPLETED" in response.json()["detail"]


async def test_only_the_owner_or_admin_cancels(client, world):
    owner, stranger, agent = world
    task = await submit(client, owner)
    assert (await cancel(client, task["task_id"], stranger)).status_code == 404
    await claim(client, agent)
    assert (await cancel(client, task["task_id"], agent.headers)).status_code == 403
    assert (await cancel(client, task["task_id"], {})).status_code == 401
    by_admin = await cancel(client, task["task_id"], ADMIN)
    assert by_admin.status_code == 200 and by_admin.json()["cancelled_by"] == "admin"
    assert (await cancel(client, "task_missing", owner)).status_code == 404


async def test_cancel_body_is_optional_and_checked(client, world):
    owner, _, _ = world
    task = await submit(client, owner)
    too_long = await cancel(client, task["task_id"], owner, "x" * 1001)
    assert too_long.status_code == 422
    response = await client.post(f"/ains/tasks/{task['task_id']}/cancel", headers=owner)
    assert response.status_code == 200 and response.json()["cancellation_reason"] == "Client requested cancellation"
