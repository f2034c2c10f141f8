"""SPEC 17: tasks that wait for other tasks. WAITING until the last dependency completes, cancelled down the
graph when one fails or is cancelled, `dependency_results` in the claim, and `run_at` / `delay_seconds`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import ADMIN, claim, create_client, register_agent, submit, task_body
from tests.workflows.helpers import stored_counts


@pytest.fixture
async def world(client):
    owner = await create_client(client, "client_1")
    agent = await register_agent(client, "agent_1", max_concurrency=50)
    return owner, agent


async def complete(client, agent, task_id, result):
    response = await client.post(f"/ains/tasks/{task_id}/complete", json={"result_data": result}, headers=agent.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def fail(client, agent, task_id, message="broken"):
    response = await client.post(
        f"/ains/tasks/{task_id}/fail", json={"error_message": message, "retryable": False}, headers=agent.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def get(client, headers, task_id):
    return (await client.get(f"/ains/tasks/{task_id}", headers=headers)).json()


async def run(client, agent, expected: int, results=None):
    """Claim (started) and complete `expected` tasks; their ids in claim order."""
    claimed = await claim(client, agent, max_tasks=50, start=True)
    assert len(claimed) == expected, [t["task_type"] for t in claimed]
    for task in claimed:
        await complete(client, agent, task["task_id"], (results or {}).get(task["task_id"], {"from": task["task_id"]}))
    return claimed


async def test_a_task_waits_for_its_dependencies_and_gets_their_results(client, world):
    owner, agent = world
    a = await submit(client, owner, task_type="a")
    b = await submit(client, owner, task_type="b")
    c = await submit(client, owner, task_type="c", depends_on=[a["task_id"], b["task_id"]])
    assert c["status"] == "WAITING" and c["depends_on"] == [a["task_id"], b["task_id"]]
    first = await claim(client, agent, max_tasks=10, start=True)
    assert {t["task_id"] for t in first} == {a["task_id"], b["task_id"]}
    assert all(t["dependency_results"] is None for t in first)
    await complete(client, agent, a["task_id"], {"a": 1})
    assert (await get(client, owner, c["task_id"]))["status"] == "WAITING"
    assert await claim(client, agent) == []
    await complete(client, agent, b["task_id"], {"b": 2})
    assert (await get(client, owner, c["task_id"]))["status"] == "PENDING"
    (claimed,) = await claim(client, agent)
    assert claimed["task_id"] == c["task_id"]
    assert claimed["dependency_results"] == {a["task_id"]: {"a": 1}, b["task_id"]: {"b": 2}}


async def test_a_completed_dependency_counts_as_done_and_a_failed_one_cancels_at_once(client, world):
    owner, agent = world
    done = await submit(client, owner, task_type="done")
    broken = await submit(client, owner, task_type="broken", max_retries=0)
    claimed = await claim(client, agent, max_tasks=2, start=True)
    await complete(client, agent, done["task_id"], {"ok": True})
    await fail(client, agent, broken["task_id"])
    assert len(claimed) == 2
    ready = await submit(client, owner, depends_on=[done["task_id"]])
    assert ready["status"] == "PENDING"
    doomed = await submit(client, owner, depends_on=[done["task_id"], broken["task_id"]])
    assert doomed["status"] == "CANCELLED"
    assert doomed["cancellation_reason"] == f"dependency {broken['task_id']} FAILED"


async def test_unknown_and_foreign_dependencies_are_refused_with_nothing_stored(client, world, db):
    owner, _ = world
    stranger = await create_client(client, "client_2")
    theirs = await submit(client, stranger)
    before = await stored_counts(db)
    for depends_on in (["task_nope"], [theirs["task_id"]]):
        response = await client.post("/ains/tasks", json=task_body(depends_on=depends_on), headers=owner)
        assert response.status_code == 422, response.text
        assert depends_on[0] in str(response.json()["detail"])
    too_many = await client.post("/ains/tasks", json=task_body(depends_on=[f"t{n}" for n in range(101)]), headers=owner)
    assert too_many.status_code == 422
    both = await client.post(
        "/ains/tasks", json=task_body(run_at="2030-01-01T00:00:00Z", delay_seconds=3), headers=owner
    )
    assert both.status_code == 422
    assert await stored_counts(db) == before


async def test_batch_items_with_dependencies(client, world, db):
    owner, agent = world
    a = await submit(client, owner, task_type="a")
    items = [task_body(depends_on=[a["task_id"]]), task_body(depends_on=["task_nope"]), task_body()]
    response = await client.post("/ains/tasks/batch", json={"tasks": items}, headers=owner)
    body = response.json()
    assert [s["index"] for s in body["submitted"]] == [0, 2]
    assert body["submitted"][0]["status"] == "WAITING" and body["submitted"][1]["status"] == "PENDING"
    assert [f["index"] for f in body["failed"]] == [1] and "task_nope" in body["failed"][0]["error"]
    before = await stored_counts(db)
    atomic = await client.post("/ains/tasks/batch", json={"tasks": items, "atomic": True}, headers=owner)
    assert atomic.json()["submitted"] == [] and await stored_counts(db) == before


async def test_failure_cascades_down_the_graph(client, world):
    owner, agent = world
    root = await submit(client, owner, task_type="root", max_retries=0)
    child = await submit(client, owner, task_type="child", depends_on=[root["task_id"]])
    grandchild = await submit(client, owner, task_type="grandchild", depends_on=[child["task_id"]])
    other = await submit(client, owner, task_type="other")
    side = await submit(client, owner, task_type="side", depends_on=[other["task_id"], child["task_id"]])
    claimed = await claim(client, agent, max_tasks=10, start=True)
    assert {t["task_id"] for t in claimed} == {root["task_id"], other["task_id"]}
    await fail(client, agent, root["task_id"])
    child_now = await get(client, owner, child["task_id"])
    assert child_now["status"] == "CANCELLED"
    assert child_now["cancellation_reason"] == f"dependency {root['task_id']} FAILED"
    for task in (grandchild, side):
        now = await get(client, owner, task["task_id"])
        assert now["status"] == "CANCELLED"
        assert now["cancellation_reason"] == f"dependency {child['task_id']} CANCELLED"
    await complete(client, agent, other["task_id"], {})
    assert (await get(client, owner, side["task_id"]))["status"] == "CANCELLED"


async def test_cancelling_a_dependency_cancels_its_dependents(client, world):
    owner, agent = world
    root = await submit(client, owner)
    child = await submit(client, owner, depends_on=[root["task_id"]])
    response = await client.post(f"/ains/tasks/{root['task_id']}/cancel", json={"reason": "no"}, headers=owner)
    assert response.status_code == 200
    now = await get(client, owner, child["task_id"])
    assert now["status"] == "CANCELLED" and now["cancellation_reason"] == f"dependency {root['task_id']} CANCELLED"
    # A WAITING task may be cancelled itself.
    root2 = await submit(client, owner)
    child2 = await submit(client, owner, depends_on=[root2["task_id"]])
    response = await client.post(f"/ains/tasks/{child2['task_id']}/cancel", json={"reason": "no"}, headers=owner)
    assert response.status_code == 200 and response.json()["status"] == "CANCELLED"
    assert (await get(client, owner, root2["task_id"]))["status"] == "PENDING"


async def test_run_at_and_delay_keep_a_task_unclaimable_until_then(client, world):
    owner, agent = world
    later = datetime.now(UTC) + timedelta(hours=1)
    at = await submit(client, owner, run_at=later.isoformat())
    delayed = await submit(client, owner, delay_seconds=3600)
    assert at["status"] == "PENDING" and delayed["status"] == "PENDING"
    assert datetime.fromisoformat(at["available_at"].replace("Z", "+00:00")) == later
    assert await claim(client, agent) == []
    soon = await submit(client, owner, delay_seconds=1)
    assert await claim(client, agent) == []
    (claimed,) = await claim(client, agent, wait_seconds=10)  # the long poll wakes when it comes due
    assert claimed["task_id"] == soon["task_id"]
    metrics = (await client.get("/ains/queue/metrics", headers=ADMIN)).json()
    assert metrics["scheduled_retries"] == 2
