"""SPEC 2: reading, listing, patching, heartbeats and deregistration, with their 401/403/404/422s."""

from tests.helpers import ADMIN, claim, create_client, register_agent, submit


async def test_get_unknown_agent_is_404(client):
    assert (await client.get("/ains/agents/agent_x")).status_code == 404


async def test_list_filters_and_pages(client):
    await register_agent(client, "agent_a", capabilities=["data:v1"], tags=["nlp"])
    await register_agent(client, "agent_b", capabilities=["data:v1", "image:v2"], tags=["vision"])
    await register_agent(client, "agent_c", capabilities=["image:v2"])
    everyone = (await client.get("/ains/agents")).json()
    assert everyone["total"] == 3 and [a["agent_id"] for a in everyone["agents"]] == ["agent_a", "agent_b", "agent_c"]
    data = (await client.get("/ains/agents", params={"capability": "data:v1"})).json()
    assert {a["agent_id"] for a in data["agents"]} == {"agent_a", "agent_b"}
    vision = (await client.get("/ains/agents", params={"tag": "vision"})).json()
    assert [a["agent_id"] for a in vision["agents"]] == ["agent_b"]
    assert (await client.get("/ains/agents", params={"min_trust": 0.6})).json()["total"] == 0
    assert (await client.get("/ains/agents", params={"min_trust": 0.5})).json()["total"] == 3
    assert (await client.get("/ains/agents", params={"status": "BUSY"})).json()["total"] == 0
    page = (await client.get("/ains/agents", params={"limit": 2, "offset": 2})).json()
    assert [a["agent_id"] for a in page["agents"]] == ["agent_c"] and page["total"] == 3
    assert (await client.get("/ains/agents", params={"limit": 0})).status_code == 422
    assert (await client.get("/ains/agents", params={"status": "ASLEEP"})).status_code == 422


async def test_patch_by_self_and_admin_only(client):
    agent = await register_agent(client, "agent_1")
    other = await register_agent(client, "agent_2")
    client_headers = await create_client(client)
    change = {"display_name": "Renamed", "capabilities": ["data:v2"], "max_concurrency": 2}
    response = await client.patch("/ains/agents/agent_1", json=change, headers=agent.headers)
    assert response.status_code == 200
    assert response.json()["display_name"] == "Renamed" and response.json()["capabilities"] == ["data:v2"]
    assert (await client.patch("/ains/agents/agent_1", json=change, headers=other.headers)).status_code == 403
    assert (await client.patch("/ains/agents/agent_1", json=change, headers=client_headers)).status_code == 403
    assert (await client.patch("/ains/agents/agent_1", json=change)).status_code == 401
    by_admin = await client.patch("/ains/agents/agent_1", json={"tags": ["x"]}, headers=ADMIN)
    assert by_admin.status_code == 200 and by_admin.json()["tags"] == ["x"]
    assert (await client.patch("/ains/agents/agent_9", json={"tags": []}, headers=ADMIN)).status_code == 404
    bad = await client.patch("/ains/agents/agent_1", json={"max_concurrency": 0}, headers=agent.headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "max_concurrency"
    null = await client.patch("/ains/agents/agent_1", json={"capabilities": None}, headers=agent.headers)
    assert null.status_code == 422
    audit = (await client.get("/ains/audit-logs", params={"action": "agent.update"}, headers=ADMIN)).json()
    assert [e["target_id"] for e in audit["entries"]] == ["agent_1"]


async def test_heartbeat(client):
    agent = await register_agent(client, "agent_1")
    other = await register_agent(client, "agent_2")
    response = await client.post("/ains/agents/agent_1/heartbeat", json={"status": "BUSY"}, headers=agent.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["acknowledged"] is True and body["cancelled_task_ids"] == [] and body["next_heartbeat_in"] > 0
    assert (await client.get("/ains/agents/agent_1")).json()["status"] == "BUSY"
    assert (await client.post("/ains/agents/agent_1/heartbeat", headers=other.headers)).status_code == 403
    assert (await client.post("/ains/agents/agent_1/heartbeat", headers=ADMIN)).status_code == 403
    assert (await client.post("/ains/agents/agent_1/heartbeat")).status_code == 401
    bad = await client.post("/ains/agents/agent_1/heartbeat", json={"status": "SLEEPING"}, headers=agent.headers)
    assert bad.status_code == 422


async def test_deregister_returns_held_tasks_and_revokes_keys(client):
    client_headers = await create_client(client)
    agent = await register_agent(client, "agent_1")
    other = await register_agent(client, "agent_2")
    first = await submit(client, client_headers)
    second = await submit(client, client_headers)
    claimed = await claim(client, agent, max_tasks=2)
    await client.post(f"/ains/tasks/{claimed[0]['task_id']}/start", headers=agent.headers)
    assert (await client.delete("/ains/agents/agent_1", headers=other.headers)).status_code == 403
    assert (await client.delete("/ains/agents/agent_1", headers=client_headers)).status_code == 403
    assert (await client.delete("/ains/agents/agent_1", headers=agent.headers)).status_code == 204
    assert (await client.get("/ains/agents/agent_1")).status_code == 404
    assert (await client.post("/ains/agents/agent_1/heartbeat", headers=agent.headers)).status_code == 401
    for task in (first, second):
        current = (await client.get(f"/ains/tasks/{task['task_id']}", headers=client_headers)).json()
        assert current["status"] == "PENDING" and current["assigned_agent_id"] is None
        assert current["retry_count"] == 0
    assert len(await claim(client, other, max_tasks=5)) == 2
    assert (await client.delete("/ains/agents/agent_2", headers=ADMIN)).status_code == 204
    assert (await client.delete("/ains/agents/agent_2", headers=ADMIN)).status_code == 404
