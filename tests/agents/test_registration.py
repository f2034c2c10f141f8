"""SPEC 2: signed registration and key re-issue; forged, stale, replayed and borrowed signatures fail."""

from datetime import UTC, datetime, timedelta

import pytest

from ains.auth.signatures import registration_message, sign
from ains.identity import Identity
from tests.helpers import bearer, register_agent


def stamp(delta_seconds: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_seconds)).isoformat().replace("+00:00", "Z")


async def test_registration_returns_the_record_and_a_working_key(client):
    identity = Identity.generate()
    body = identity.registration("agent_456") | {
        "display_name": "Premium Agent",
        "endpoint": "https://agent.example.com",
        "capabilities": ["data:v1"],
        "tags": ["nlp"],
        "max_concurrency": 5,
    }
    response = await client.post("/ains/agents", json=body)
    assert response.status_code == 201
    record = response.json()
    assert record["agent_id"] == "agent_456" and record["status"] == "AVAILABLE"
    assert record["trust_score"] == 0.5 and record["capabilities"] == ["data:v1"] and record["tags"] == ["nlp"]
    assert record["api_key"].startswith("ains_agent_")
    heartbeat = await client.post("/ains/agents/agent_456/heartbeat", json={}, headers=bearer(record["api_key"]))
    assert heartbeat.status_code == 200
    public = (await client.get("/ains/agents/agent_456")).json()
    assert "api_key" not in public and public["public_key"] == identity.public_key


async def test_forged_signature_is_401(client):
    identity = Identity.generate()
    body = identity.registration("agent_1")
    body["signature"] = ("00" if body["signature"][:2] != "00" else "11") + body["signature"][2:]
    assert (await client.post("/ains/agents", json=body)).status_code == 401


@pytest.mark.parametrize("offset", [-301, 301])
async def test_stale_or_future_timestamp_is_401(client, offset):
    body = Identity.generate().registration("agent_1", timestamp=stamp(offset))
    response = await client.post("/ains/agents", json=body)
    assert response.status_code == 401
    assert "window" in response.json()["detail"]


async def test_timestamp_inside_the_window_is_accepted(client):
    body = Identity.generate().registration("agent_1", timestamp=stamp(-240))
    assert (await client.post("/ains/agents", json=body)).status_code == 201


async def test_signature_by_another_key_is_401(client):
    mine, theirs = Identity.generate(), Identity.generate()
    body = mine.registration("agent_1")
    # Someone else's public key with my signature: I cannot prove I own it.
    body["public_key"] = theirs.public_key
    body["signature"] = sign(mine.private_key, registration_message("agent_1", theirs.public_key, body["timestamp"]))
    assert (await client.post("/ains/agents", json=body)).status_code == 401


async def test_replayed_registration_is_refused(client):
    body = Identity.generate().registration("agent_1")
    assert (await client.post("/ains/agents", json=body)).status_code == 201
    assert (await client.post("/ains/agents", json=body)).status_code == 401


async def test_duplicate_agent_id_or_public_key_is_409(client):
    first = await register_agent(client, "agent_1")
    same_id = Identity.generate().registration("agent_1")
    assert (await client.post("/ains/agents", json=same_id)).status_code == 409
    same_key = first.identity.registration("agent_2", timestamp=stamp(-1))
    response = await client.post("/ains/agents", json=same_key)
    assert response.status_code == 409 and "public_key" in response.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("agent_id", "ab"),
        ("agent_id", "a" * 65),
        ("agent_id", "bad id!"),
        ("public_key", "zz" * 32),
        ("signature", "abc"),
        ("capabilities", ["data"]),
        ("capabilities", "data:v1"),
        ("max_concurrency", 0),
        ("endpoint", "ftp://x"),
    ],
)
async def test_malformed_registration_is_422_naming_the_field(client, field, value):
    body = Identity.generate().registration("agent_1") | {field: value}
    response = await client.post("/ains/agents", json=body)
    assert response.status_code == 422
    assert field in response.json()["detail"][0]["loc"]


async def test_token_reissue_replaces_the_old_key(client):
    agent = await register_agent(client, "agent_1")
    response = await client.post("/ains/agents/agent_1/token", json=agent.identity.token_request("agent_1"))
    assert response.status_code == 201
    new_key = response.json()["api_key"]
    assert (await client.post("/ains/agents/agent_1/heartbeat", headers=bearer(new_key))).status_code == 200
    assert (await client.post("/ains/agents/agent_1/heartbeat", headers=agent.headers)).status_code == 401


async def test_token_reissue_refuses_replays_other_keys_and_unknown_agents(client):
    agent = await register_agent(client, "agent_1")
    body = agent.identity.token_request("agent_1")
    assert (await client.post("/ains/agents/agent_1/token", json=body)).status_code == 201
    assert (await client.post("/ains/agents/agent_1/token", json=body)).status_code == 401
    stranger = Identity.generate().token_request("agent_1")
    assert (await client.post("/ains/agents/agent_1/token", json=stranger)).status_code == 401
    stale = agent.identity.token_request("agent_1", timestamp=stamp(-400))
    assert (await client.post("/ains/agents/agent_1/token", json=stale)).status_code == 401
    unknown = Identity.generate().token_request("agent_9")
    assert (await client.post("/ains/agents/agent_9/token", json=unknown)).status_code == 404
    assert (await client.post("/ains/agents/agent_1/token", json={"timestamp": stamp()})).status_code == 422
