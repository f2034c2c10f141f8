"""SPEC 18: `agent_registration=token`. Admin-made tokens, hashed at rest, listed and revoked like keys;
`max_uses` exact under concurrent registrations; missing, used-up, expired or revoked tokens are 401."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from ains.agents.models import Agent
from ains.auth.keys import hash_key
from ains.auth.models import RegistrationToken
from ains.identity import Identity
from tests.helpers import ADMIN, create_client


@pytest.fixture
def settings_overrides() -> dict:
    return {"agent_registration": "token"}


def _registration(agent_id: str, token: str | None) -> dict:
    body = Identity.generate().registration(agent_id) | {"capabilities": ["data:v1"]}
    return body | ({"registration_token": token} if token is not None else {})


async def _token(client, **extra) -> dict:
    response = await client.post("/ains/registration-tokens", json={"name": "fleet", **extra}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


async def test_registration_needs_a_valid_token(client, db):
    made = await _token(client)
    assert {"token_id", "token", "name", "created_at", "expires_at", "max_uses", "uses"} <= made.keys()
    missing = await client.post("/ains/agents", json=_registration("agent_1", None))
    assert missing.status_code == 401 and "registration_token" in missing.json()["detail"]
    wrong = await client.post("/ains/agents", json=_registration("agent_1", "ains_reg_nope"))
    assert wrong.status_code == 401
    ok = await client.post("/ains/agents", json=_registration("agent_1", made["token"]))
    assert ok.status_code == 201, ok.text
    async with db.read() as session:
        row = await session.get(RegistrationToken, made["token_id"])
    assert row.token_hash == hash_key(made["token"]) and row.uses == 1  # only the hash is stored


async def test_twenty_concurrent_registrations_with_five_uses_make_five_agents(client, db):
    made = await _token(client, max_uses=5)
    answers = await asyncio.gather(
        *(client.post("/ains/agents", json=_registration(f"agent_{n:02d}", made["token"])) for n in range(20))
    )
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [201] * 5 + [401] * 15, codes
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Agent)) == 5
    listed = (await client.get("/ains/registration-tokens", headers=ADMIN)).json()["registration_tokens"]
    assert listed[0]["uses"] == 5 and listed[0]["max_uses"] == 5
    assert made["token"] not in str(listed)


async def test_a_failed_registration_does_not_spend_a_use(client):
    made = await _token(client, max_uses=2)
    assert (await client.post("/ains/agents", json=_registration("agent_1", made["token"]))).status_code == 201
    # Refused after the token was checked (a duplicate agent id): its use goes back with the transaction.
    assert (await client.post("/ains/agents", json=_registration("agent_1", made["token"]))).status_code == 409
    assert (await client.post("/ains/agents", json=_registration("agent_2", made["token"]))).status_code == 201
    assert (await client.post("/ains/agents", json=_registration("agent_3", made["token"]))).status_code == 401


async def test_expired_and_revoked_tokens_are_refused(client, clock):
    expiring = await _token(client, expires_at=(clock.now + timedelta(seconds=30)).isoformat())
    revoked = await _token(client)
    clock.advance(29)
    assert (await client.post("/ains/agents", json=_registration("agent_1", expiring["token"]))).status_code == 201
    clock.advance(1)
    assert (await client.post("/ains/agents", json=_registration("agent_2", expiring["token"]))).status_code == 401
    assert (await client.delete(f"/ains/registration-tokens/{revoked['token_id']}", headers=ADMIN)).status_code == 204
    assert (await client.post("/ains/agents", json=_registration("agent_3", revoked["token"]))).status_code == 401
    assert (await client.delete(f"/ains/registration-tokens/{revoked['token_id']}", headers=ADMIN)).status_code == 404
    listed = (await client.get("/ains/registration-tokens", headers=ADMIN)).json()["registration_tokens"]
    assert [t["token_id"] for t in listed] == [expiring["token_id"]]
    everything = await client.get("/ains/registration-tokens?include_revoked=true", headers=ADMIN)
    assert len(everything.json()["registration_tokens"]) == 2
    entries = (await client.get("/ains/audit-logs?limit=500", headers=ADMIN)).json()["entries"]
    actions = {(e["action"], e["target_id"]) for e in entries}
    assert ("registration_token.create", revoked["token_id"]) in actions
    assert ("registration_token.revoke", revoked["token_id"]) in actions
    assert ("registration_token.use", expiring["token_id"]) in actions


async def test_tokens_are_admin_business(client):
    headers = await create_client(client)
    assert (await client.post("/ains/registration-tokens", json={"name": "x"}, headers=headers)).status_code == 403
    assert (await client.get("/ains/registration-tokens", headers=headers)).status_code == 403
    assert (await client.delete("/ains/registration-tokens/regtok_x", headers=headers)).status_code == 403
    assert (
        await client.post("/ains/registration-tokens", json={"name": "x", "max_uses": 0}, headers=ADMIN)
    ).status_code == 422


@pytest.mark.parametrize("settings_overrides", [{"agent_registration": "open"}])
async def test_open_registration_needs_no_token(client):
    assert (await client.post("/ains/agents", json=_registration("agent_1", None))).status_code == 201
