"""Reports are idempotent per attempt (SPEC 14): the assigned agent repeating /start, /complete or /fail for the
task's current attempt with the same outcome gets 200 and the task, and nothing changes (no second trust record,
event or attempt); a different outcome for a finished attempt, or a stale attempt, is 409. Batch items alike."""

from tests.helpers import claim, create_client, register_agent, submit


async def _post(client, path, headers, **body):
    return await client.post(path, json=body, headers=headers)


async def _records(client, agent_id):
    return len((await client.get(f"/ains/agents/{agent_id}/trust/history")).json()["records"])


async def test_repeated_start_complete_and_fail_change_nothing(client):
    owner = await create_client(client)
    agent = await register_agent(client)
    done, failed = await submit(client, owner), await submit(client, owner, max_retries=1)
    tasks = {t["task_id"]: t for t in await claim(client, agent, max_tasks=2)}
    a, b = tasks[done["task_id"]], tasks[failed["task_id"]]
    for task in (a, b):
        for _ in range(2):
            started = await _post(client, f"/ains/tasks/{task['task_id']}/start", agent.headers, attempt=1)
            assert started.status_code == 200 and started.json()["status"] == "ACTIVE", started.text

    first = await _post(client, f"/ains/tasks/{a['task_id']}/complete", agent.headers, attempt=1, result_data={"v": 1})
    assert first.status_code == 200
    records = await _records(client, "agent_1")
    again = await _post(client, f"/ains/tasks/{a['task_id']}/complete", agent.headers, attempt=1, result_data={"v": 1})
    assert again.status_code == 200 and again.json() == first.json()
    assert await _records(client, "agent_1") == records  # no second trust change
    other = await _post(client, f"/ains/tasks/{a['task_id']}/fail", agent.headers, attempt=1, error_message="x")
    assert other.status_code == 409

    # A retryable failure sends the task back to the queue; the same /fail again is answered, not refused.
    body = {"attempt": 1, "error_message": "flaky"}
    first = await _post(client, f"/ains/tasks/{b['task_id']}/fail", agent.headers, **body)
    assert first.status_code == 200 and first.json()["status"] == "PENDING" and first.json()["retry_count"] == 1
    again = await _post(client, f"/ains/tasks/{b['task_id']}/fail", agent.headers, **body)
    assert again.status_code == 200 and again.json()["retry_count"] == 1
    assert (await _post(client, f"/ains/tasks/{b['task_id']}/complete", agent.headers, attempt=1)).status_code == 409
    attempts = (await client.get(f"/ains/tasks/{b['task_id']}/attempts", headers=owner)).json()["attempts"]
    assert [(x["attempt"], x["outcome"]) for x in attempts] == [(1, "failed")]


async def test_a_repeat_for_an_older_attempt_is_stale(client):
    owner = await create_client(client)
    agent = await register_agent(client)
    task = await submit(client, owner, max_retries=1, retry_policy="fixed")
    await claim(client, agent, start=True)
    path = f"/ains/tasks/{task['task_id']}"
    assert (await _post(client, f"{path}/fail", agent.headers, attempt=1, error_message="x")).status_code == 200
    stale = await _post(client, f"{path}/start", agent.headers, attempt=2)
    assert stale.status_code in (404, 409)  # attempt 2 does not exist yet


async def test_batch_items_repeat_like_single_reports(client):
    owner = await create_client(client)
    agent = await register_agent(client)
    one, two = await submit(client, owner), await submit(client, owner)
    await claim(client, agent, max_tasks=2, start=True)
    items = [{"task_id": one["task_id"], "attempt": 1, "result_data": {}}]
    first = await _post(client, "/ains/tasks/complete-batch", agent.headers, items=items)
    assert first.json()["results"][0]["status"] == "COMPLETED"
    items.append({"task_id": two["task_id"], "attempt": 1, "result_data": {}})
    again = (await _post(client, "/ains/tasks/complete-batch", agent.headers, items=items)).json()["results"]
    assert [r.get("status") for r in again] == ["COMPLETED", "COMPLETED"]
    refused = await _post(
        client, "/ains/tasks/fail-batch", agent.headers, items=[{"task_id": one["task_id"], "error_message": "x"}]
    )
    assert refused.json()["results"][0].get("status_code") == 409
