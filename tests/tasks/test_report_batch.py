"""SPEC 3 complete-batch and fail-batch: many outcomes in one call, each item answered on its own."""

import pytest

from ains.core.metrics import DB_STATEMENTS
from tests.helpers import ADMIN, claim, create_client, register_agent, statements_seen, submit


@pytest.fixture
def settings_overrides():
    return {"retry_exponential_base_seconds": 0, "webhook_allow_private": True}


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


def _statements() -> float:
    return sum(DB_STATEMENTS.labels(kind)._value.get() for kind in ("read", "write"))


async def _complete_all(client, agent, tasks) -> tuple[float, list[dict]]:
    items = [{"task_id": t["task_id"], "attempt": t["attempt"], "result_data": {"n": i}} for i, t in enumerate(tasks)]
    before = _statements()
    response = await client.post("/ains/tasks/complete-batch", json={"items": items}, headers=agent.headers)
    return _statements() - before, response.json()["results"]


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": True, "run_background": False}])
async def test_a_batch_costs_the_same_statements_whatever_its_size(client):
    """Agent and tasks are locked and attempts read once per batch, and the writes go out in one flush.

    No background duties (the webhook dispatcher among them) run, so every statement counted is the batch's.
    """
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1", max_concurrency=100)
    hook = {"url": "http://127.0.0.1:9/h", "events": ["task.completed"]}
    assert (await client.post("/ains/clients/client_1/webhooks", json=hook, headers=owner)).status_code == 201
    for _ in range(42):
        await submit(client, owner)
    small_cost, small = await _complete_all(client, agent, await claim(client, agent, max_tasks=2, start=True))
    large_cost, large = await _complete_all(client, agent, await claim(client, agent, max_tasks=40, start=True))
    assert [r["status"] for r in small + large] == ["COMPLETED"] * 42
    assert large_cost == small_cost, (small_cost, large_cost)
    trust = (await client.get("/ains/agents/agent_1/trust")).json()
    assert trust["metrics"]["total_tasks_completed"] == 42 and trust["trust_score"] == 1.0
    chain = (await client.get("/ains/agents/agent_1/trust/verify", headers=ADMIN)).json()
    assert chain["valid"] and chain["records_checked"] == 42
    events = (await client.get("/ains/tasks", params={"status": "COMPLETED", "limit": 100}, headers=owner)).json()
    assert sorted(t["result_data"]["n"] for t in events["tasks"]) == sorted([0, 1, *range(40)])


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize("settings_overrides", [{"run_background": False}])
async def test_complete_writes_the_attempt_row_in_its_own_statement_on_postgres(client, db):
    """One statement completes the task and finishes its current attempt row. `/start` writes the attempt row in a
    statement of its own: it holds no agent lock, so a claim's attempt row may be newer than its snapshot."""
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    await submit(client, owner)
    (task,) = await claim(client, agent, max_tasks=1)
    async with statements_seen(db.engine) as seen_starting:  # a lean transaction: through the driver
        body = {"attempt": task["attempt"]}
        assert (
            await client.post(f"/ains/tasks/{task['task_id']}/start", json=body, headers=agent.headers)
        ).status_code == 200
    starting = seen_starting.work()
    async with statements_seen(db.engine) as seen_completing:
        body = {"attempt": task["attempt"], "result_data": {"ok": True}}
        done = await client.post(f"/ains/tasks/{task['task_id']}/complete", json=body, headers=agent.headers)
        assert done.status_code == 200
    assert starting[0].startswith("UPDATE tasks SET status = 'ACTIVE'"), starting
    assert [sql for sql in starting if "task_attempts" in sql] == [starting[1]], starting
    assert starting[1].startswith("UPDATE task_attempts SET started_at")
    assert seen_completing.through_sqlalchemy == []  # a lean transaction too: the task has no dependents
    completing = seen_completing.work()
    touching_attempts = [sql for sql in completing if "task_attempts" in sql]
    assert len(touching_attempts) == 1 and touching_attempts[0].startswith(
        "WITH moved AS (UPDATE tasks SET status = 'COMPLETED'"
    )
    (attempt,) = (await client.get(f"/ains/tasks/{task['task_id']}/attempts", headers=owner)).json()["attempts"]
    assert attempt["started_at"] and attempt["finished_at"] and attempt["outcome"] == "completed"
    assert attempt["error"] is None
