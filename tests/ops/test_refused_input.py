"""SPEC 13: text holding U+0000 or a lone surrogate, and numbers that are NaN, infinite or beyond the float
range, are 422 naming the field, on every route and both databases; nothing of such a request is stored,
except that a non-atomic batch's valid items are; forged cursors are 400; metadata is bounded (413); a value
the database refuses is 422, not 503."""

import json

import pytest

from tests.helpers import ADMIN, claim, create_client, register_agent, submit, task_body

JSON = {"content-type": "application/json"}


def raw_task(fragment: str) -> bytes:
    """A task body with `fragment` (raw JSON text) as the value of metadata.note."""
    return ('{"task_type":"a","capability_required":"data:v1","metadata":{"note":' + fragment + "}}").encode()


async def all_tasks(client) -> list[dict]:
    response = await client.get("/ains/tasks", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["tasks"]


def loc(response) -> list:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail[0]["msg"]
    return detail[0]["loc"]


async def test_nul_and_lone_surrogates_are_422_naming_the_field(client):
    owner = await create_client(client)
    post = lambda body, **kw: client.post("/ains/tasks", content=body, headers=owner | JSON, **kw)  # noqa: E731
    assert loc(await client.post("/ains/tasks", json=task_body(metadata={"note": "a\x00b"}), headers=owner)) == [
        "body",
        "metadata",
        "note",
    ]
    assert loc(
        await client.post("/ains/tasks", json=task_body(input_data={"k\x00": [1, {"x": 2}]}), headers=owner)
    ) == ["body", "input_data", "k\\u0000"]
    deep = task_body(input_data={"a": [{"b": ["ok", "bad\x00"]}]})
    assert loc(await client.post("/ains/tasks", json=deep, headers=owner)) == ["body", "input_data", "a", 0, "b", 1]
    assert loc(await post(raw_task('"\\ud800"'))) == ["body", "metadata", "note"]  # escaped lone surrogate
    assert loc(await post(raw_task('"\\uDFFF tail"'))) == ["body", "metadata", "note"]
    raw = b'{"task_type":"a","capability_required":"data:v1","metadata":{"note":"x\xed\xa0\x80"}}'
    assert loc(await post(raw)) == ["body", "metadata", "note"]  # the surrogate's raw UTF-8 bytes
    assert loc(await client.post("/ains/tasks", json=task_body(task_type="t\x00"), headers=owner)) == [
        "body",
        "task_type",
    ]
    assert loc(await client.get("/ains/tasks/abc%00def", headers=owner)) == ["path", "task_id"]
    assert loc(await client.get("/ains/tasks", params={"client_id": "c\x00"}, headers=owner)) == ["query", "client_id"]
    # Public routes too.
    agent = await register_agent(client, "agent_1")
    body = agent.identity.registration("agent_2") | {"capabilities": ["data:v1"], "display_name": "n\x00"}
    assert loc(await client.post("/ains/agents", json=body)) == ["body", "display_name"]
    assert loc(await client.get("/ains/agents", params={"tag": "\x00"})) == ["query", "tag"]
    assert loc(await client.get("/ains/agents/agent%00_1")) == ["path", "agent_id"]
    # An agent cannot be stuck by its own result: refused at the edge, the task stays completable.
    task = await submit(client, owner)
    await claim(client, agent, start=True)
    done = f"/ains/tasks/{task['task_id']}/complete"
    assert loc(await client.post(done, json={"result_data": {"r": "\x00"}}, headers=agent.headers)) == [
        "body",
        "result_data",
        "r",
    ]
    assert (await client.post(done, json={"result_data": {"r": "fine"}}, headers=agent.headers)).status_code == 200
    assert [t["task_id"] for t in await all_tasks(client)] == [task["task_id"]]
    assert (await client.get("/ains/agents")).json()["agents"].__len__() == 1


@pytest.mark.parametrize(
    "body",
    [
        '{"task_type":"a","capability_required":"data:v1","priority":NaN}',
        '{"task_type":"a","capability_required":"data:v1","min_trust_score":Infinity}',
        '{"task_type":"a","capability_required":"data:v1","min_trust_score":-Infinity}',
        '{"task_type":"a","capability_required":"data:v1","min_trust_score":1e400}',
        '{"task_type":"a","capability_required":"data:v1","input_data":{"x":[1,{"y":-1e999}]}}',
        "NaN",
        "1e400",
        "[Infinity]",
    ],
)
async def test_non_finite_numbers_are_422_not_500(client, body):
    owner = await create_client(client)
    response = await client.post("/ains/tasks", content=body, headers=owner | JSON)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "finite_number"
    assert await all_tasks(client) == []


async def test_non_finite_numbers_on_other_routes(client):
    agent = await register_agent(client, "agent_1")
    url = "/ains/agents/agent_1/tasks/claim"
    assert loc(await client.post(url, content=b'{"wait_seconds": NaN}', headers=agent.headers | JSON)) == [
        "body",
        "wait_seconds",
    ]
    body = json.dumps(agent.identity.registration("agent_2") | {"capabilities": ["data:v1"]})
    body = body[:-1] + ', "max_concurrency": 1e400}'
    assert loc(await client.post("/ains/agents", content=body, headers=JSON)) == ["body", "max_concurrency"]
    # A query number that is not finite is refused by its bounds, and the error is still JSON.
    assert (await client.get("/ains/agents", params={"min_trust": "nan"})).status_code == 422
    assert (await client.get("/ains/agents", params={"min_trust": "inf"})).status_code == 422


async def test_a_non_atomic_batch_item_with_refused_text_fails_alone(client):
    owner = await create_client(client)
    items = [task_body(), task_body(metadata={"x": "\x00"}), task_body(input_data={"v": float("nan")}), task_body()]
    body = json.dumps({"tasks": items, "atomic": False})
    assert "NaN" in body
    response = await client.post("/ains/tasks/batch", content=body, headers=owner | JSON)
    assert response.status_code == 201 or response.status_code == 200, response.text
    result = response.json()
    assert [s["index"] for s in result["submitted"]] == [0, 3]
    assert [f["index"] for f in result["failed"]] == [1, 2]
    assert "metadata.x" in result["failed"][0]["error"] and "input_data.v" in result["failed"][1]["error"]
    assert len(await all_tasks(client)) == 2
    # Atomic: nothing stored.
    response = await client.post(
        "/ains/tasks/batch", content=json.dumps({"tasks": items, "atomic": True}), headers=owner | JSON
    )
    assert response.status_code < 500 and response.json()["submitted"] == []
    assert len(await all_tasks(client)) == 2
    # Refused text outside the items (here a key of an item... no: the batch's own fields) fails the request.
    bad = await client.post("/ains/tasks/batch", json={"tasks": [task_body()], "atomic\x00": 1}, headers=owner)
    assert loc(bad) == ["body", "atomic\\u0000"]


@pytest.mark.parametrize(
    "cursor",
    ["garbage!", "%%%", "eyJ4IjoxfQ", "WzFd.AAAA", "x" * 600, "WyIyMDI2LTAxLTAxIiwgMV0.bm90LWEtdGFn"],
)
async def test_a_cursor_ains_did_not_issue_is_400(client, cursor):
    owner = await create_client(client)
    for path in ("/ains/tasks", "/ains/audit-logs"):
        response = await client.get(path, params={"cursor": cursor}, headers=ADMIN if "audit" in path else owner)
        assert response.status_code == 400, (path, response.text)
        assert "cursor" in response.json()["detail"]


async def test_an_edited_cursor_is_400_and_an_issued_one_works(client):
    owner = await create_client(client)
    for _ in range(3):
        await submit(client, owner)
    first = (await client.get("/ains/tasks", params={"limit": 2}, headers=owner)).json()
    cursor = first["next_cursor"]
    page = await client.get("/ains/tasks", params={"limit": 2, "cursor": cursor}, headers=owner)
    assert page.status_code == 200 and len(page.json()["tasks"]) == 1
    import base64

    body, tag = cursor.split(".")
    values = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for forged in (["not a date", values[1]], [values[0], 12345], [1, 2], values + [1]):
        payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
        response = await client.get("/ains/tasks", params={"cursor": f"{payload}.{tag}"}, headers=owner)
        assert response.status_code == 400, response.text


async def test_hostile_but_valid_text_is_stored_and_read_back(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    text = "👩🏽‍💻 עברית‏ العربية ‮gnp.exe Z̴̡̙a̷̰͋l̶͉͝g̸̟̔o ﷽ \u200b\ufeff\U0001f600 \\u0000 \\ud800 " + "ℵ" * 5000
    task = await submit(
        client,
        owner,
        task_type="t" * 100,
        input_data={text[:50]: text, "nested": [{"k": text}], "big": 2**62, "small": -1.5e-300},
        metadata={"note": text[:3000]},
        idempotency_key="🙂" * 200,
    )
    claimed = await claim(client, agent)
    assert [t["task_id"] for t in claimed] == [task["task_id"]]
    assert claimed[0]["input_data"]["nested"][0]["k"] == text and claimed[0]["metadata"]["note"] == text[:3000]
    listed = await all_tasks(client)
    assert listed[0]["input_data"][text[:50]] == text and listed[0]["idempotency_key"] == "🙂" * 200
    got = await client.get(f"/ains/tasks/{task['task_id']}", headers=owner)
    assert got.status_code == 200 and got.json()["input_data"]["big"] == 2**62


class TestMetadataBound:
    @pytest.fixture
    def settings_overrides(self):
        return {"max_metadata_bytes": 200}

    async def test_metadata_is_bounded_by_max_metadata_bytes(self, client):
        owner = await create_client(client)
        assert (
            await client.post("/ains/tasks", json=task_body(metadata={"x": "y" * 150}), headers=owner)
        ).status_code == 201
        response = await client.post("/ains/tasks", json=task_body(metadata={"x": "y" * 250}), headers=owner)
        assert response.status_code == 413 and "metadata" in response.json()["detail"]
        batch = await client.post(
            "/ains/tasks/batch", json={"tasks": [task_body(metadata={"x": "y" * 250}), task_body()]}, headers=owner
        )
        assert [f["index"] for f in batch.json()["failed"]] == [0] and len(batch.json()["submitted"]) == 1
        assert len(await all_tasks(client)) == 2


async def test_a_value_the_database_refuses_is_422_not_503(app, client, db):
    """The safety net behind the edge: a database's data error (PostgreSQL SQLSTATE class 22, SQLite's
    encoding error) answers 422, while an unreachable database stays 503 (test_metrics)."""
    from sqlalchemy import text

    async def store(value: str) -> dict:
        async with db.transaction() as session:
            await session.execute(text("SELECT CAST(:v AS TEXT)"), {"v": value})
        return {}

    async def nul() -> dict:
        return await store("a\x00b")

    async def surrogate() -> dict:
        return await store("a\ud800b")

    app.add_api_route("/test/refused-nul", nul)
    app.add_api_route("/test/refused-surrogate", surrogate)
    for path in ("/test/refused-nul", "/test/refused-surrogate"):
        response = await client.get(path)
        if response.status_code == 200:  # SQLite stores NUL in TEXT
            assert path.endswith("nul") and db.is_sqlite
            continue
        assert response.status_code == 422, (path, response.text)
        assert response.json()["detail"][0]["msg"] == "A value in the request cannot be stored by the database"


async def test_a_validation_error_holding_nan_or_a_surrogate_is_still_json(app, client):
    """The safety net behind the edge: should a non-finite number or a lone surrogate ever reach a model, its
    validation error still answers 422 JSON (FastAPI's own answer would fail to serialise: a 500)."""
    from fastapi.exceptions import RequestValidationError

    async def invalid() -> dict:
        errors = [
            {"loc": ("body", "x"), "msg": "bad", "type": "value_error", "input": float("nan")},
            {"loc": ("body", "y"), "msg": "bad", "type": "value_error", "input": ["\ud800", float("-inf")]},
        ]
        raise RequestValidationError(errors)

    app.add_api_route("/test/invalid", invalid)
    response = await client.get("/test/invalid")
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["input"] == "nan" and detail[1]["input"] == ["\\ud800", "-inf"]
