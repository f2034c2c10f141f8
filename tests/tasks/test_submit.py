"""SPEC 3: submission rules and defaults, 413, idempotency, and who may read or list a task."""

import asyncio

import pytest

from tests.helpers import ADMIN, claim, create_client, register_agent, submit, task_body


async def test_submit_applies_the_defaults(client):
    headers = await create_client(client, "client_1")
    response = await client.post("/ains/tasks", json=task_body(client_id="client_1"), headers=headers)
    assert response.status_code == 201
    task = response.json()
    expected = {
        "client_id": "client_1",
        "status": "PENDING",
        "priority": 5,
        "max_retries": 3,
        "retry_policy": "exponential",
        "retry_jitter": False,
        "timeout_seconds": 300,
        "retry_count": 0,
        "attempt": 0,
        "assigned_agent_id": None,
        "metadata": {},
        "min_trust_score": None,
    }
    assert {k: task[k] for k in expected} == expected
    for field in (
        "task_id",
        "created_at",
        "assigned_at",
        "started_at",
        "completed_at",
        "result_data",
        "error_message",
        "next_retry_at",
        "last_error",
        "cancelled_at",
        "cancelled_by",
        "cancellation_reason",
        "idempotency_key",
    ):
        assert field in task
    assert task["created_at"].endswith("Z")


async def test_submit_keeps_every_given_field(client):
    headers = await create_client(client, "client_1")
    body = task_body(
        priority=9,
        max_retries=0,
        retry_policy="linear",
        retry_jitter=True,
        timeout_seconds=10,
        metadata={"k": "v"},
        min_trust_score=0.7,
        input_data={"deep": {"x": [1, 2]}},
    )
    task = await submit(client, headers, **body)
    stored = (await client.get(f"/ains/tasks/{task['task_id']}", headers=headers)).json()
    for key, value in body.items():
        assert stored[key] == value, key


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("task_type", ""),
        ("task_type", "x" * 101),
        ("capability_required", "data"),
        ("capability_required", None),
        ("input_data", [1, 2]),
        ("priority", 0),
        ("priority", 11),
        ("priority", "5"),
        ("priority", 2.5),
        ("max_retries", -1),
        ("max_retries", 11),
        ("retry_policy", "random"),
        ("retry_jitter", "yes"),
        ("timeout_seconds", 0),
        ("timeout_seconds", 3601),
        ("idempotency_key", "k" * 201),
        ("min_trust_score", 1.5),
        ("min_trust_score", -0.1),
        ("metadata", "x"),
    ],
)
async def test_invalid_fields_are_422_naming_the_field(client, field, value):
    headers = await create_client(client)
    response = await client.post("/ains/tasks", json=task_body(**{field: value}), headers=headers)
    assert response.status_code == 422
    assert field in response.json()["detail"][0]["loc"]
    assert (await client.get("/ains/tasks", headers=headers)).json()["tasks"] == []


async def test_missing_required_fields_are_422(client):
    headers = await create_client(client)
    response = await client.post("/ains/tasks", json={"task_type": "x"}, headers=headers)
    assert response.status_code == 422
    assert "capability_required" in str(response.json()["detail"])
    assert (await client.post("/ains/tasks", content=b"{not json", headers=headers)).status_code == 422


async def test_input_over_the_limit_is_413(client, settings):
    headers = await create_client(client)
    big = {"blob": "x" * settings.max_input_bytes}
    response = await client.post("/ains/tasks", json=task_body(input_data=big), headers=headers)
    assert response.status_code == 413
    assert "input_data" in response.json()["detail"]
    assert (await client.get("/ains/tasks", headers=headers)).json()["tasks"] == []
    just_fits = {"b": "x" * (settings.max_input_bytes - 8)}
    assert (await client.post("/ains/tasks", json=task_body(input_data=just_fits), headers=headers)).status_code == 201


async def test_client_submits_only_as_itself_and_admin_for_anyone(client):
    headers = await create_client(client, "client_1")
    assert (await client.post("/ains/tasks", json=task_body(client_id="client_2"), headers=headers)).status_code == 403
    by_admin = await client.post("/ains/tasks", json=task_body(client_id="client_2"), headers=ADMIN)
    assert by_admin.status_code == 201 and by_admin.json()["client_id"] == "client_2"
    assert (await client.post("/ains/tasks", json=task_body(), headers=ADMIN)).status_code == 422
    agent = await register_agent(client, "agent_1")
    as_agent = await client.post("/ains/tasks", json=task_body(), headers=agent.headers)
    assert as_agent.status_code == 201 and as_agent.json()["client_id"] == "agent_1"
    assert (
        await client.post("/ains/tasks", json=task_body(client_id="client_1"), headers=agent.headers)
    ).status_code == 403


async def test_idempotency_key_returns_the_first_task(client):
    headers = await create_client(client, "client_1")
    other = await create_client(client, "client_2")
    first = await client.post("/ains/tasks", json=task_body(idempotency_key="order-1"), headers=headers)
    again = await client.post("/ains/tasks", json=task_body(idempotency_key="order-1", priority=9), headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["task_id"] == first.json()["task_id"] and again.json()["priority"] == 5
    theirs = await client.post("/ains/tasks", json=task_body(idempotency_key="order-1"), headers=other)
    assert theirs.status_code == 201 and theirs.json()["task_id"] != first.json()["task_id"]


async def test_concurrent_submissions_with_one_key_make_one_task(client):
    headers = await create_client(client, "client_1")
    responses = await asyncio.gather(
        *(client.post("/ains/tasks", json=task_body(idempotency_key="same"), headers=headers) for _ in range(10))
    )
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["task_id"] for r in responses}) == 1
    assert len((await client.get("/ains/tasks", headers=headers)).json()["tasks"]) == 1


async def test_get_is_limited_to_owner_assigned_agent_and_admin(client):
    owner = await create_client(client, "client_1")
    stranger = await create_client(client, "client_2")
    agent = await register_agent(client, "agent_1")
    bystander = await register_agent(client, "agent_2", capabilities=["other:v1"])
    task = await submit(client, owner)
    path = f"/ains/tasks/{task['task_id']}"
    assert (await client.get(path, headers=owner)).status_code == 200
    assert (await client.get(path, headers=ADMIN)).status_code == 200
    assert (await client.get(path, headers=stranger)).status_code == 404
    assert (await client.get(path, headers=agent.headers)).status_code == 404
    await claim(client, agent)
    assert (await client.get(path, headers=agent.headers)).status_code == 200
    assert (await client.get(path, headers=bystander.headers)).status_code == 404
    assert (await client.get(f"{path}/attempts", headers=stranger)).status_code == 404
    assert (await client.get(path)).status_code == 401
    assert (await client.get("/ains/tasks/task_missing", headers=owner)).status_code == 404


async def test_list_pages_with_a_cursor_newest_first(client):
    headers = await create_client(client, "client_1")
    made = [(await submit(client, headers))["task_id"] for _ in range(7)]
    seen, cursor = [], None
    for _ in range(4):
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/ains/tasks", params=params, headers=headers)).json()
        seen += [t["task_id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    assert (await client.get("/ains/tasks", params={"limit": 501}, headers=headers)).status_code == 422
    assert (await client.get("/ains/tasks", params={"cursor": "garbage!"}, headers=headers)).status_code == 400


async def test_list_is_scoped_and_filtered(client):
    mine = await create_client(client, "client_1")
    theirs = await create_client(client, "client_2")
    agent = await register_agent(client, "agent_1", capabilities=["data:v1", "image:v1"])
    a = await submit(client, mine, priority=9)
    b = await submit(client, mine, capability_required="image:v1")
    c = await submit(client, theirs)
    assert {t["task_id"] for t in (await client.get("/ains/tasks", headers=mine)).json()["tasks"]} == {
        a["task_id"],
        b["task_id"],
    }
    # Asking for another client's tasks yields nothing, not their tasks.
    assert (await client.get("/ains/tasks", params={"client_id": "client_2"}, headers=mine)).json()["tasks"] == []
    assert len((await client.get("/ains/tasks", headers=ADMIN)).json()["tasks"]) == 3
    by_priority = (await client.get("/ains/tasks", params={"priority": 9}, headers=mine)).json()["tasks"]
    assert [t["task_id"] for t in by_priority] == [a["task_id"]]
    by_capability = (await client.get("/ains/tasks", params={"capability": "image:v1"}, headers=ADMIN)).json()["tasks"]
    assert [t["task_id"] for t in by_capability] == [b["task_id"]]
    assert (await client.get("/ains/tasks", headers=agent.headers)).json()["tasks"] == []
    await claim(client, agent, max_tasks=1)
    assigned = (await client.get("/ains/tasks", headers=agent.headers)).json()["tasks"]
    assert [t["task_id"] for t in assigned] == [a["task_id"]]
    pending = (await client.get("/ains/tasks", params={"status": "PENDING"}, headers=ADMIN)).json()["tasks"]
    assert {t["task_id"] for t in pending} == {b["task_id"], c["task_id"]}
    assert (await client.get("/ains/tasks", params={"status": "DONE"}, headers=ADMIN)).status_code == 422
