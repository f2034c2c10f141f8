"""SPEC 6: priority changes, effective priority and aging against starvation, and queue metrics."""

import asyncio

import pytest

from tests.helpers import ADMIN, claim, create_client, register_agent, submit

AGING = 0.4


@pytest.fixture
def settings_overrides():
    return {"aging_interval_seconds": AGING, "retry_fixed_seconds": 60}


async def test_priority_change_reorders_the_queue(client):
    owner = await create_client(client)
    agent = await register_agent(client)
    first = await submit(client, owner, priority=5)
    second = await submit(client, owner, priority=5)
    response = await client.patch(f"/ains/tasks/{second['task_id']}/priority", json={"priority": 9}, headers=owner)
    assert response.status_code == 200 and response.json()["priority"] == 9
    assert [t["task_id"] for t in await claim(client, agent)] == [second["task_id"]]
    assert [t["task_id"] for t in await claim(client, agent)] == [first["task_id"]]


async def test_priority_change_rules(client):
    owner = await create_client(client, "client_1")
    stranger = await create_client(client, "client_2")
    agent = await register_agent(client)
    task = await submit(client, owner)
    path = f"/ains/tasks/{task['task_id']}/priority"
    assert (await client.patch(path, json={"priority": 9}, headers=stranger)).status_code == 404
    assert (await client.patch(path, json={"priority": 11}, headers=owner)).status_code == 422
    assert (await client.patch(path, json={}, headers=owner)).status_code == 422
    assert (await client.patch(path, json={"priority": 9})).status_code == 401
    await claim(client, agent, start=True)
    assert (await client.patch(path, json={"priority": 9}, headers=agent.headers)).status_code == 403
    assert (await client.patch(path, json={"priority": 2}, headers=ADMIN)).status_code == 200
    await client.post(f"/ains/tasks/{task['task_id']}/complete", headers=agent.headers)
    final = await client.patch(path, json={"priority": 9}, headers=owner)
    assert final.status_code == 409 and "COMPLETED" in final.json()["detail"]


async def test_effective_priority_grows_while_waiting_and_is_capped(clock, client):
    # Waiting is the test clock's: one step per aging interval exactly, never a sleep.
    owner = await create_client(client)
    task = await submit(client, owner, priority=3)
    assert task["effective_priority"] == 3.0
    clock.advance(AGING * 2.5)
    later = (await client.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()
    assert later["effective_priority"] == 5.5
    clock.advance(AGING * 6)
    assert (await client.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()["effective_priority"] == 10


async def test_a_low_priority_task_is_not_starved(client):
    owner = await create_client(client)
    agent = await register_agent(client, max_concurrency=1000)
    low = await submit(client, owner, priority=1)
    claimed_low = False
    for _ in range(200):
        # Two fresh priority-10 tasks arrive for every one claimed: the queue never runs dry of them.
        await submit(client, owner, priority=10)
        await submit(client, owner, priority=10)
        (task,) = await claim(client, agent)
        if task["task_id"] == low["task_id"]:
            claimed_low = True
            break
        await asyncio.sleep(0.05)
    assert claimed_low, "the priority-1 task starved"
    waiting = (await client.get("/ains/tasks", params={"status": "PENDING", "priority": 10}, headers=owner)).json()
    assert waiting["tasks"], "it won against newer priority-10 tasks, not an empty queue"


async def test_queue_metrics_are_scoped_and_complete(client):
    mine = await create_client(client, "client_1")
    theirs = await create_client(client, "client_2")
    agent = await register_agent(client, max_concurrency=10)
    top = await submit(client, mine, priority=10)
    await submit(client, mine, priority=5)
    await submit(client, mine, priority=5)
    retried = await submit(client, theirs, priority=7, retry_policy="fixed")
    assert [t["task_id"] for t in await claim(client, agent)] == [top["task_id"]]
    assert [t["task_id"] for t in await claim(client, agent, start=True)] == [retried["task_id"]]
    await client.post(f"/ains/tasks/{retried['task_id']}/fail", json={"error_message": "x"}, headers=agent.headers)

    admin_view = (await client.get("/ains/queue/metrics", headers=ADMIN)).json()
    assert set(admin_view) == {
        "tasks_by_priority",
        "queue_depth_by_priority",
        "avg_wait_time_by_priority",
        "scheduled_retries",
        "oldest_pending_age_seconds",
    }
    assert admin_view["tasks_by_priority"] == {"10": 1, "7": 1, "5": 2}
    assert admin_view["queue_depth_by_priority"] == {"5": 2}  # the priority-7 task waits for its retry delay
    assert admin_view["scheduled_retries"] == 1
    assert set(admin_view["avg_wait_time_by_priority"]) == {"5"}
    assert admin_view["avg_wait_time_by_priority"]["5"] >= 0 and admin_view["oldest_pending_age_seconds"] > 0

    mine_view = (await client.get("/ains/queue/metrics", headers=mine)).json()
    assert mine_view["tasks_by_priority"] == {"10": 1, "5": 2}
    assert mine_view["queue_depth_by_priority"] == {"5": 2}
    assert mine_view["scheduled_retries"] == 0
    await asyncio.sleep(0.5)
    later = (await client.get("/ains/queue/metrics", headers=mine)).json()
    assert later["avg_wait_time_by_priority"]["5"] >= mine_view["avg_wait_time_by_priority"]["5"] + 0.4
    assert (await client.get("/ains/queue/metrics")).status_code == 401
