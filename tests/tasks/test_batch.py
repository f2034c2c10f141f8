"""SPEC 5 batch submission: per-item validation, atomic or not, idempotency, the 100-item limit."""

from tests.helpers import ADMIN, create_client, task_body


async def test_valid_items_are_stored_and_invalid_ones_reported(client):
    owner = await create_client(client, "client_1")
    items = [task_body(), task_body(priority=11), task_body(priority=9), {"task_type": "x"}]
    response = await client.post("/ains/tasks/batch", json={"tasks": items}, headers=owner)
    assert response.status_code == 200
    body = response.json()
    assert [s["index"] for s in body["submitted"]] == [0, 2]
    assert all(s["status"] == "PENDING" and s["client_id"] == "client_1" for s in body["submitted"])
    assert [f["index"] for f in body["failed"]] == [1, 3]
    assert body["failed"][0]["error"].startswith("priority")
    assert body["failed"][1]["error"].startswith("capability_required")
    stored = (await client.get("/ains/tasks", headers=owner)).json()["tasks"]
    assert {t["task_id"] for t in stored} == {s["task_id"] for s in body["submitted"]}


async def test_atomic_batch_is_all_or_nothing(client):
    owner = await create_client(client, "client_1")
    items = [task_body(), task_body(capability_required="nope")]
    body = (await client.post("/ains/tasks/batch", json={"tasks": items, "atomic": True}, headers=owner)).json()
    assert body["submitted"] == [] and [f["index"] for f in body["failed"]] == [1]
    assert (await client.get("/ains/tasks", headers=owner)).json()["tasks"] == []
    ok = (
        await client.post("/ains/tasks/batch", json={"tasks": [task_body()] * 3, "atomic": True}, headers=owner)
    ).json()
    assert len(ok["submitted"]) == 3 and ok["failed"] == []


async def test_more_than_100_is_422_and_stores_nothing(client):
    owner = await create_client(client, "client_1")
    response = await client.post("/ains/tasks/batch", json={"tasks": [task_body()] * 101}, headers=owner)
    assert response.status_code == 422
    assert (await client.get("/ains/tasks", headers=owner)).json()["tasks"] == []
    assert (await client.post("/ains/tasks/batch", json={"tasks": []}, headers=owner)).status_code == 422
    assert (await client.post("/ains/tasks/batch", json={"tasks": "x"}, headers=owner)).status_code == 422


async def test_items_keep_idempotency_and_ownership_rules(client, settings):
    owner = await create_client(client, "client_1")
    first = (await client.post("/ains/tasks", json=task_body(idempotency_key="k1"), headers=owner)).json()
    items = [
        task_body(idempotency_key="k1"),
        task_body(client_id="client_2"),
        task_body(input_data={"x": "y" * settings.max_input_bytes}),
    ]
    body = (await client.post("/ains/tasks/batch", json={"tasks": items}, headers=owner)).json()
    assert body["submitted"][0]["task_id"] == first["task_id"]
    assert [f["index"] for f in body["failed"]] == [1, 2]
    assert "client_id" in body["failed"][0]["error"] and "input_data" in body["failed"][1]["error"]
    by_admin = await client.post("/ains/tasks/batch", json={"tasks": [task_body(client_id="client_9")]}, headers=ADMIN)
    assert by_admin.json()["submitted"][0]["client_id"] == "client_9"
    assert (await client.post("/ains/tasks/batch", json={"tasks": [task_body()]})).status_code == 401
