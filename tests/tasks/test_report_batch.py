"""SPEC 3 complete-batch and fail-batch: many outcomes in one call, each item answered on its own."""

import pytest

from tests.helpers import ADMIN, claim, create_client, register_agent, submit


@pytest.fixture
def settings_overrides():
    return {"retry_exponential_base_seconds": 0}


async def test_complete_batch_answers_each_item(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1", max_concurrency=10)
    other = await register_agent(client, "agent_2")
    for _ in range(3):
        await submit(client, owner)
    mine = await claim(client, agent, max_tasks=2, start=True)
    (theirs,) = await claim(client, other, start=True)
    items = [
        {"task_id": mine[0]["task_id"], "attempt": 1, "result_data": {"ok": 1}},
        {"task_id": mine[1]["task_id"], "attempt": 7, "result_data": {}},
        {"task_id": theirs["task_id"], "attempt": 1},
        {"task_id": "task_missing", "attempt": 1},
    ]
    response = await client.post("/ains/tasks/complete-batch", json={"items": items}, headers=agent.headers)
    assert response.status_code == 200
    results = response.json()["results"]
    assert results[0] == {"task_id": mine[0]["task_id"], "status": "COMPLETED"}
    assert results[1]["status_code"] == 409 and "stale" in results[1]["error"] and "status" not in results[1]
    assert results[2]["status_code"] == 404 and results[3]["status_code"] == 404
    first = (await client.get(f"/ains/tasks/{mine[0]['task_id']}", headers=owner)).json()
    assert first["status"] == "COMPLETED" and first["result_data"] == {"ok": 1}
    assert (await client.get(f"/ains/tasks/{mine[1]['task_id']}", headers=owner)).json()["status"] == "ACTIVE"
    assert (await client.get("/ains/agents/agent_1/trust")).json()["trust_score"] == 0.52


async def test_fail_batch_follows_the_retry_rules(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1", max_concurrency=10)
    retried = await submit(client, owner)
    final = await submit(client, owner, max_retries=0)
    await claim(client, agent, max_tasks=2, start=True)
    items = [
        {"task_id": retried["task_id"], "attempt": 1, "error_message": "transient"},
        {"task_id": final["task_id"], "attempt": 1, "error_message": "broken", "retryable": False},
        {"task_id": final["task_id"], "attempt": 1, "error_message": "twice"},
    ]
    results = (await client.post("/ains/tasks/fail-batch", json={"items": items}, headers=agent.headers)).json()
    assert [r.get("status") for r in results["results"]] == ["PENDING", "FAILED", None]
    assert "FAILED" in results["results"][2]["error"]
    assert (await client.get(f"/ains/tasks/{final['task_id']}", headers=owner)).json()["error_message"] == "broken"


async def test_batch_reports_are_for_agents_and_bounded(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    one = {"task_id": "task_x", "attempt": 1}
    for headers in (owner, ADMIN):
        assert (
            await client.post("/ains/tasks/complete-batch", json={"items": [one]}, headers=headers)
        ).status_code == 403
    assert (await client.post("/ains/tasks/complete-batch", json={"items": [one]})).status_code == 401
    too_many = {"items": [one] * 101}
    assert (await client.post("/ains/tasks/complete-batch", json=too_many, headers=agent.headers)).status_code == 422
    no_error = {"items": [{"task_id": "task_x"}]}
    assert (await client.post("/ains/tasks/fail-batch", json=no_error, headers=agent.headers)).status_code == 422
