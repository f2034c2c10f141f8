"""SPEC 1: admin key management, 401/403 rules, scopes, and the audit trail of key changes."""

from tests.helpers import ADMIN, bearer, create_client, register_agent, task_body


async def test_admin_creates_a_client_key_that_works(client):
    response = await client.post("/ains/api-keys", json={"client_id": "client_1", "name": "ci"}, headers=ADMIN)
    assert response.status_code == 201
    body = response.json()
    assert {"key_id", "client_id", "name", "api_key", "created_at"} <= body.keys()
    assert body["client_id"] == "client_1" and body["api_key"].startswith("ains_client_")
    submitted = await client.post("/ains/tasks", json=task_body(), headers=bearer(body["api_key"]))
    assert submitted.status_code == 201
    assert submitted.json()["client_id"] == "client_1"


async def test_list_never_shows_the_key(client):
    created = (await client.post("/ains/api-keys", json={"client_id": "client_1", "name": "a"}, headers=ADMIN)).json()
    response = await client.get("/ains/api-keys", headers=ADMIN)
    assert response.status_code == 200
    keys = response.json()["api_keys"]
    assert [k["key_id"] for k in keys] == [created["key_id"]]
    assert "api_key" not in keys[0] and created["api_key"] not in response.text


async def test_revoked_key_is_refused(client):
    created = (await client.post("/ains/api-keys", json={"client_id": "client_1", "name": "a"}, headers=ADMIN)).json()
    assert (await client.delete(f"/ains/api-keys/{created['key_id']}", headers=ADMIN)).status_code == 204
    response = await client.get("/ains/tasks", headers=bearer(created["api_key"]))
    assert response.status_code == 401
    assert (await client.delete(f"/ains/api-keys/{created['key_id']}", headers=ADMIN)).status_code == 404
    listed = (await client.get("/ains/api-keys?include_revoked=true", headers=ADMIN)).json()["api_keys"]
    assert listed[0]["revoked_at"] is not None


async def test_missing_or_unknown_key_is_401(client):
    assert (await client.get("/ains/api-keys")).status_code == 401
    assert (await client.get("/ains/api-keys", headers=bearer("ains_admin_nope"))).status_code == 401
    assert (await client.get("/ains/api-keys", headers={"Authorization": "Basic abc"})).status_code == 401
    response = await client.post("/ains/tasks", json=task_body())
    assert response.status_code == 401 and "detail" in response.json()


async def test_the_bearer_header_is_read_as_the_standard_says(client):
    """The scheme in any case, the key after one space with blanks around it ignored; anything else is 401 (on a
    hot route, which reads the header itself, and on one that asks for the principal too)."""
    key = (await client.post("/ains/api-keys", json={"client_id": "client_1", "name": "a"}, headers=ADMIN)).json()
    secret = key["api_key"]
    for header in (f"Bearer {secret}", f"bearer {secret}", f"BEARER {secret}", f"Bearer {secret}  "):
        submitted = await client.post("/ains/tasks", json=task_body(), headers={"Authorization": header})
        assert submitted.status_code == 201, header
        task_id = submitted.json()["task_id"]
        assert (await client.get(f"/ains/tasks/{task_id}", headers={"Authorization": header})).status_code == 200
        assert (await client.get("/ains/tasks", headers={"Authorization": header})).status_code == 200
    for header in ("Bearer", "Bearer ", f"Basic {secret}", f"Token {secret}", secret, f"Bearer{secret}"):
        for method, path in (("POST", "/ains/tasks"), ("GET", "/ains/tasks")):
            response = await client.request(method, path, json=task_body(), headers={"Authorization": header})
            assert response.status_code == 401 and "detail" in response.json(), (header, method, path)


async def test_key_management_is_admin_only(client):
    client_headers = await create_client(client)
    agent = await register_agent(client)
    for headers in (client_headers, agent.headers):
        assert (
            await client.post("/ains/api-keys", json={"client_id": "x_1", "name": "a"}, headers=headers)
        ).status_code == 403
        assert (await client.get("/ains/api-keys", headers=headers)).status_code == 403
        assert (await client.delete("/ains/api-keys/key_x", headers=headers)).status_code == 403
        assert (await client.get("/ains/audit-logs", headers=headers)).status_code == 403


async def test_bad_key_requests_are_422_naming_the_field(client):
    response = await client.post("/ains/api-keys", json={"client_id": "a", "name": "x"}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "client_id"
    response = await client.post("/ains/api-keys", json={"client_id": "client_1"}, headers=ADMIN)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "name"
    response = await client.post(
        "/ains/api-keys", json={"client_id": "client_1", "name": "x", "scopes": ["root"]}, headers=ADMIN
    )
    assert response.status_code == 422


async def test_client_id_may_not_be_an_agent_id(client):
    await register_agent(client, "agent_1")
    response = await client.post("/ains/api-keys", json={"client_id": "agent_1", "name": "x"}, headers=ADMIN)
    assert response.status_code == 409


async def test_scopes_limit_what_a_key_may_do(client):
    read_only = await create_client(client, "client_ro", scopes=["tasks:read"])
    assert (await client.post("/ains/tasks", json=task_body(), headers=read_only)).status_code == 403
    assert (await client.get("/ains/tasks", headers=read_only)).status_code == 200


async def test_key_changes_are_audited(client):
    created = (await client.post("/ains/api-keys", json={"client_id": "client_1", "name": "a"}, headers=ADMIN)).json()
    await client.delete(f"/ains/api-keys/{created['key_id']}", headers=ADMIN)
    agent = await register_agent(client, "agent_1")
    response = await client.get("/ains/audit-logs", headers=ADMIN)
    assert response.status_code == 200
    entries = response.json()["entries"]
    actions = [(e["action"], e["actor"], e["target_id"]) for e in entries]
    assert ("api_key.create", "admin", created["key_id"]) in actions
    assert ("api_key.revoke", "admin", created["key_id"]) in actions
    assert any(a == "api_key.issue_agent" and actor == agent.agent_id for a, actor, _ in actions)
    assert created["api_key"] not in response.text


async def test_audit_log_pages(client):
    for n in range(5):
        await client.post("/ains/api-keys", json={"client_id": f"client_{n}", "name": "a"}, headers=ADMIN)
    first = (await client.get("/ains/audit-logs?limit=2", headers=ADMIN)).json()
    second = (await client.get(f"/ains/audit-logs?limit=2&cursor={first['next_cursor']}", headers=ADMIN)).json()
    ids = [e["id"] for e in first["entries"] + second["entries"]]
    assert len(ids) == 4 and ids == sorted(ids, reverse=True)
    assert (await client.get("/ains/audit-logs?cursor=%%%", headers=ADMIN)).status_code == 400
