"""SPEC 9 webhook management: create, list, patch, delete; validation; who may touch which webhook."""

import pytest

from tests.helpers import ADMIN, create_client, register_agent

PUBLIC = "https://93.184.216.34/hook"


@pytest.fixture
async def principals(client):
    owner = await create_client(client, "client_1")
    other = await create_client(client, "client_2")
    agent = await register_agent(client, "agent_1")
    stranger = await register_agent(client, "agent_2")
    return owner, other, agent, stranger


async def test_create_list_patch_delete(client, principals):
    owner, _, agent, _ = principals
    created = await client.post(
        "/ains/agents/agent_1/webhooks", json={"url": PUBLIC, "events": ["task.completed"]}, headers=agent.headers
    )
    assert created.status_code == 201
    hook = created.json()
    assert hook["secret"].startswith("whsec_") and hook["active"] is True and hook["events"] == ["task.completed"]
    listed = (await client.get("/ains/agents/agent_1/webhooks", headers=agent.headers)).json()["webhooks"]
    assert [h["webhook_id"] for h in listed] == [hook["webhook_id"]] and "secret" not in listed[0]
    given = await client.post(
        "/ains/clients/client_1/webhooks",
        json={"url": PUBLIC, "events": ["task.created", "task.failed"], "secret": "my-own-secret-1234"},
        headers=owner,
    )
    assert given.status_code == 201 and given.json()["secret"] == "my-own-secret-1234"
    path = f"/ains/webhooks/{hook['webhook_id']}"
    patched = await client.patch(path, json={"active": False, "events": ["task.failed"]}, headers=agent.headers)
    assert patched.status_code == 200
    assert patched.json()["active"] is False and patched.json()["events"] == ["task.failed"]
    assert patched.json()["secret"] is None
    rotated = (await client.patch(path, json={"rotate_secret": True}, headers=agent.headers)).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != hook["secret"]
    assert (await client.delete(path, headers=agent.headers)).status_code == 204
    assert (await client.get("/ains/agents/agent_1/webhooks", headers=agent.headers)).json()["webhooks"] == []
    assert (await client.delete(path, headers=agent.headers)).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": PUBLIC, "events": ["task.exploded"]}, "events"),
        ({"url": PUBLIC, "events": []}, "events"),
        ({"url": "ftp://93.184.216.34/x", "events": ["task.created"]}, "url"),
        ({"url": "http://127.0.0.1:9/x", "events": ["task.created"]}, "url"),
        ({"url": "http://localhost/x", "events": ["task.created"]}, "url"),
        ({"url": "http://10.0.0.7/x", "events": ["task.created"]}, "url"),
        ({"url": "http://169.254.169.254/x", "events": ["task.created"]}, "url"),
        ({"url": PUBLIC, "events": ["task.created"], "secret": "short"}, "secret"),
        ({"events": ["task.created"]}, "url"),
        ({"url": "http://127.1:9/x", "events": ["task.created"]}, "url"),  # numbers, not an address literal
        ({"url": "https://[::a%41::\uff48]:8443/", "events": ["task.created"]}, "url"),  # a host httpx can't encode
    ],
)
async def test_bad_webhooks_are_422_naming_the_field(client, principals, body, field):
    owner = principals[0]
    response = await client.post("/ains/clients/client_1/webhooks", json=body, headers=owner)
    assert response.status_code == 422
    assert field in response.json()["detail"][0]["loc"]
    assert (await client.get("/ains/clients/client_1/webhooks", headers=owner)).json()["webhooks"] == []


async def test_only_owners_and_the_admin(client, principals):
    owner, other, agent, stranger = principals
    body = {"url": PUBLIC, "events": ["task.created"]}
    for headers in (other, agent.headers):
        assert (await client.post("/ains/clients/client_1/webhooks", json=body, headers=headers)).status_code == 403
        assert (await client.get("/ains/clients/client_1/webhooks", headers=headers)).status_code == 403
    for headers in (owner, stranger.headers):
        assert (await client.post("/ains/agents/agent_1/webhooks", json=body, headers=headers)).status_code == 403
    assert (await client.post("/ains/clients/client_1/webhooks", json=body)).status_code == 401
    hook = (await client.post("/ains/clients/client_1/webhooks", json=body, headers=owner)).json()
    path = f"/ains/webhooks/{hook['webhook_id']}"
    for headers in (other, agent.headers):
        assert (await client.patch(path, json={"active": False}, headers=headers)).status_code == 404
        assert (await client.delete(path, headers=headers)).status_code == 404
        assert (await client.get(f"{path}/deliveries", headers=headers)).status_code == 404
    assert (await client.patch(path, json={"active": False}, headers=ADMIN)).status_code == 200
    by_admin = await client.post("/ains/agents/agent_1/webhooks", json=body, headers=ADMIN)
    assert by_admin.status_code == 201
    assert (await client.post("/ains/agents/agent_9/webhooks", json=body, headers=ADMIN)).status_code == 404
    no_scope = await create_client(client, "client_3", scopes=["tasks:read"])
    assert (await client.post("/ains/clients/client_3/webhooks", json=body, headers=no_scope)).status_code == 403


async def test_patch_validates(client, principals):
    owner = principals[0]
    hook = (
        await client.post(
            "/ains/clients/client_1/webhooks", json={"url": PUBLIC, "events": ["task.created"]}, headers=owner
        )
    ).json()
    path = f"/ains/webhooks/{hook['webhook_id']}"
    assert (await client.patch(path, json={"url": "http://127.0.0.1/x"}, headers=owner)).status_code == 422
    assert (await client.patch(path, json={"events": ["nope"]}, headers=owner)).status_code == 422
    assert (await client.patch(path, json={"active": None}, headers=owner)).status_code == 422
    assert (await client.patch(path, json={"active": "yes"}, headers=owner)).status_code == 422
