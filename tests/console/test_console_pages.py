"""The console's pages and forms over HTTP, on SQLite and PostgreSQL (the browser tests run on SQLite)."""

from __future__ import annotations

import re

import httpx

from tests.helpers import ADMIN, ADMIN_KEY, claim, create_client, register_agent, submit

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def sign_in(client: httpx.AsyncClient, key: str) -> str:
    """Sign in as `key`; answers the session's CSRF token."""
    page = await client.get("/console/sign-in")
    token = CSRF.search(page.text).group(1)
    response = await client.post("/console/sign-in", data={"csrf": token, "api_key": key, "next": "/console"})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    return CSRF.search((await client.get("/console")).text).group(1)


async def test_every_page_renders_with_data(client):
    alice = await create_client(client, "alice")
    agent = await register_agent(client, "agent_1")
    await submit(client, alice, priority=3)
    done = await submit(client, alice, priority=9)
    (held,) = await claim(client, agent, start=True)
    assert held["task_id"] == done["task_id"]
    response = await client.post(f"/ains/tasks/{done['task_id']}/complete", json={}, headers=agent.headers)
    assert response.status_code == 200
    await client.post("/ains/agents/agent_1/trust/adjust", json={"delta": -0.1, "reason": "test"}, headers=ADMIN)
    await sign_in(client, ADMIN_KEY)
    for path, expected in (
        ("/console", '1 completed · <span class="key key-bad"></span> 0 failed attempts'),
        ("/console/tasks", done["task_id"]),
        ("/console/tasks?status=COMPLETED&priority=9&capability=data:v1", done["task_id"]),
        (f"/console/tasks/{done['task_id']}", "attempt 1 completed"),
        ("/console/agents", "agent_1"),
        ("/console/agents/agent_1", "verified"),
        ("/console/webhooks", "No webhooks yet"),
        ("/console/audit", "trust.adjust"),
    ):
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text[-500:])
        assert expected in response.text, path
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
    live = (await client.get("/console/live")).json()
    assert live["signed_in"] and live["stamp"]
    assert (await client.get("/console/agents/nobody")).status_code == 404
    assert (await client.get("/console/tasks?cursor=forged")).status_code == 400


async def test_signed_out_pages_lead_to_sign_in_and_bad_keys_are_refused(client):
    response = await client.get("/console/tasks?status=PENDING")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in?next=%2Fconsole%2Ftasks%3Fstatus%3DPENDING"
    assert (await client.get("/console/live")).status_code == 401
    page = await client.get("/console/sign-in")
    token = CSRF.search(page.text).group(1)
    refused = await client.post("/console/sign-in", data={"csrf": token, "api_key": "ains_client_nope"})
    assert refused.status_code == 401 and "not accepted" in refused.text
    agent = await register_agent(client, "agent_2")
    refused = await client.post("/console/sign-in", data={"csrf": token, "api_key": agent.api_key})
    assert refused.status_code == 401  # agents do not sign in to the console
    # An outside address in `next` is not followed.
    alice = (await create_client(client, "alice"))["Authorization"].split()[1]
    response = await client.post(
        "/console/sign-in", data={"csrf": token, "api_key": alice, "next": "https://evil.example/console"}
    )
    assert response.headers["location"] == "/console"


async def test_actions_need_the_csrf_token_and_the_right_owner(client):
    alice = await create_client(client, "alice")
    bob = await create_client(client, "bob")
    mine = await submit(client, alice)
    theirs = await submit(client, bob)
    token = await sign_in(client, alice["Authorization"].split()[1])

    url = f"/console/tasks/{mine['task_id']}/cancel"
    assert (await client.post(url, data={"confirmed": "yes"})).status_code == 403
    assert (await client.post(url, data={"confirmed": "yes", "csrf": token + "x"})).status_code == 403
    # Without confirmation the console asks first, and changes nothing.
    asked = await client.post(url, data={"csrf": token, "reason": "done with it"})
    assert asked.status_code == 200 and "Yes, cancel it" in asked.text
    assert (await client.get(f"/ains/tasks/{mine['task_id']}", headers=alice)).json()["status"] == "PENDING"
    priority = await client.post(
        f"/console/tasks/{mine['task_id']}/priority", data={"csrf": token, "priority": "9", "confirmed": "yes"}
    )
    assert priority.status_code == 303 and "notice=Priority+set+to+9" in priority.headers["location"]
    cancelled = await client.post(url, data={"csrf": token, "reason": "done with it", "confirmed": "yes"})
    assert cancelled.status_code == 303
    task = (await client.get(f"/ains/tasks/{mine['task_id']}", headers=alice)).json()
    assert task["status"] == "CANCELLED" and task["priority"] == 9 and task["cancellation_reason"] == "done with it"
    again = await client.post(url, data={"csrf": token, "confirmed": "yes"})
    assert again.status_code == 303 and "problem=" in again.headers["location"]

    # Bob's task does not exist for Alice, in the list, by URL, or as a form target.
    assert theirs["task_id"] not in (await client.get("/console/tasks")).text
    assert (await client.get(f"/console/tasks/{theirs['task_id']}")).status_code == 404
    forged = await client.post(f"/console/tasks/{theirs['task_id']}/cancel", data={"csrf": token, "confirmed": "yes"})
    assert forged.status_code == 404
    assert (await client.get("/console/audit")).status_code == 403
    trust = await client.post("/console/agents/any/trust", data={"csrf": token, "delta": "0.1", "confirmed": "yes"})
    assert trust.status_code == 403

    # Signing out ends the session; the old token is no good afterwards.
    assert (await client.post("/console/sign-out", data={"csrf": token})).status_code == 303
    assert (await client.get("/console/tasks")).status_code == 303
    assert (await client.post(url, data={"csrf": token, "confirmed": "yes"})).status_code == 403


async def test_a_revoked_key_ends_its_session(client):
    response = await client.post("/ains/api-keys", json={"client_id": "carol", "name": "t"}, headers=ADMIN)
    created = response.json()
    await sign_in(client, created["api_key"])
    assert (await client.get("/console/tasks")).status_code == 200
    assert (await client.delete(f"/ains/api-keys/{created['key_id']}", headers=ADMIN)).status_code in (200, 204)
    assert (await client.get("/console/tasks")).status_code == 303


async def test_console_routes_are_not_in_the_api_schema(client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/console")]


async def test_workflows_and_schedules(client):
    alice = await create_client(client, "alice")
    bob = await create_client(client, "bob")
    steps = [
        {"key": "fetch", "task_type": "t", "capability_required": "data:v1", "input_data": {}},
        {"key": "parse", "task_type": "t", "capability_required": "data:v1", "input_data": {}, "depends_on": ["fetch"]},
        {"key": "report", "task_type": "t", "capability_required": "data:v1", "input_data": {},
         "depends_on": ["fetch", "parse"]},
    ]  # fmt: skip
    response = await client.post("/ains/workflows", json={"name": "nightly", "steps": steps}, headers=alice)
    assert response.status_code == 201, response.text
    workflow = response.json()
    response = await client.post(
        "/ains/schedules",
        json={"name": "hourly report", "cron": "0 * * * *", "task": {"task_type": "t", "capability_required": "x:v1"}},
        headers=alice,
    )
    assert response.status_code == 201, response.text
    await sign_in(client, alice["Authorization"].split()[1])
    listed = await client.get("/console/workflows")
    assert workflow["workflow_id"] in listed.text and "nightly" in listed.text
    page = await client.get(f"/console/workflows/{workflow['workflow_id']}")
    assert page.status_code == 200
    assert page.text.count('class="node node-') == 3 and page.text.count('class="edge"') == 3
    schedules = await client.get("/console/schedules")
    assert "hourly report" in schedules.text and "0 * * * *" in schedules.text

    await client.post("/console/sign-out", data={"csrf": CSRF.search(page.text).group(1)})
    await sign_in(client, bob["Authorization"].split()[1])
    assert (await client.get(f"/console/workflows/{workflow['workflow_id']}")).status_code == 404
    assert "No workflows yet" in (await client.get("/console/workflows")).text
    assert "No schedules yet" in (await client.get("/console/schedules")).text


async def test_a_key_without_a_scope_is_refused_that_page(client):
    response = await client.post(
        "/ains/api-keys", json={"client_id": "dora", "name": "t", "scopes": ["webhooks:read"]}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    await sign_in(client, response.json()["api_key"])
    assert (await client.get("/console/tasks")).status_code == 403
    assert (await client.get("/console/workflows")).status_code == 403
    assert (await client.get("/console/webhooks")).status_code == 200
