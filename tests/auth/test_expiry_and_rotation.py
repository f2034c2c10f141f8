"""SPEC 18: a key stops working at its `expires_at` (401), a rotated key's old secret works until the grace
ends; every step is in the audit log. Times are moved by the test's own clock, never slept."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.helpers import ADMIN, bearer, register_agent, task_body


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def _key(client, **extra) -> dict:
    response = await client.post("/ains/api-keys", json={"client_id": "client_1", "name": "k", **extra}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


async def _actions(client) -> list[tuple[str, str | None]]:
    entries = (await client.get("/ains/audit-logs?limit=500", headers=ADMIN)).json()["entries"]
    return [(entry["action"], entry["target_id"]) for entry in entries]


async def test_a_key_works_until_its_expiry_and_not_at_it(client, clock):
    start = clock.now
    created = await _key(client, expires_at=_iso(start + timedelta(seconds=60)))
    assert created["expires_at"] == _iso(start + timedelta(seconds=60))
    headers = bearer(created["api_key"])
    clock.advance(59.999)
    assert (await client.get("/ains/tasks", headers=headers)).status_code == 200
    clock.advance(0.001)  # exactly expires_at: no longer valid
    response = await client.get("/ains/tasks", headers=headers)
    assert response.status_code == 401 and response.json() == {"detail": "API key expired"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    # Again (from the key cache, where there is one): still refused, still one audit entry.
    assert (await client.post("/ains/tasks", json=task_body(), headers=headers)).status_code == 401
    expired_uses = [a for a in await _actions(client) if a == ("api_key.expired_use", created["key_id"])]
    assert len(expired_uses) == 1
    listed = (await client.get("/ains/api-keys", headers=ADMIN)).json()["api_keys"]
    assert listed[0]["expires_at"] == created["expires_at"]


async def test_expiry_must_be_in_the_future(client, clock):
    response = await client.post(
        "/ains/api-keys", json={"client_id": "client_1", "name": "k", "expires_at": _iso(clock.now)}, headers=ADMIN
    )
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "expires_at"


async def test_rotation_gives_a_new_key_and_the_old_one_works_through_the_grace(client, clock):
    old = await _key(client, scopes=["tasks:read"], rate_limit_per_second=50, rate_limit_burst=70)
    response = await client.post(f"/ains/api-keys/{old['key_id']}/rotate", json={"grace_seconds": 100}, headers=ADMIN)
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["api_key"] != old["api_key"] and new["key_id"] != old["key_id"]
    assert new["client_id"] == "client_1" and new["scopes"] == ["tasks:read"]
    assert (new["rate_limit_per_second"], new["rate_limit_burst"]) == (50, 70)
    assert new["rotated_from"] == old["key_id"] and new["expires_at"] is None
    assert new["old_key_expires_at"] is not None
    old_headers, new_headers = bearer(old["api_key"]), bearer(new["api_key"])
    assert (await client.get("/ains/tasks", headers=new_headers)).status_code == 200
    assert (await client.post("/ains/tasks", json=task_body(), headers=new_headers)).status_code == 403  # scopes kept
    clock.advance(99.999)
    assert (await client.get("/ains/tasks", headers=old_headers)).status_code == 200
    clock.advance(0.001)
    assert (await client.get("/ains/tasks", headers=old_headers)).status_code == 401
    assert (await client.get("/ains/tasks", headers=new_headers)).status_code == 200
    actions = await _actions(client)
    assert ("api_key.create", old["key_id"]) in actions and ("api_key.rotate", old["key_id"]) in actions
    assert ("api_key.expired_use", old["key_id"]) in actions


async def test_rotation_defaults_to_an_hour_of_grace_and_keeps_the_keys_lifetime(client, clock):
    old = await _key(client, expires_at=_iso(clock.now + timedelta(days=30)))
    clock.advance(86400)
    new = (await client.post(f"/ains/api-keys/{old['key_id']}/rotate", headers=ADMIN)).json()
    assert new["old_key_expires_at"] == _iso(clock.now + timedelta(seconds=3600))
    assert new["expires_at"] == _iso(clock.now + timedelta(days=30))  # a 30-day key gives a 30-day key
    clock.advance(3599)
    assert (await client.get("/ains/tasks", headers=bearer(old["api_key"]))).status_code == 200
    clock.advance(1)
    assert (await client.get("/ains/tasks", headers=bearer(old["api_key"]))).status_code == 401


async def test_a_grace_never_extends_an_earlier_expiry(client, clock):
    old = await _key(client, expires_at=_iso(clock.now + timedelta(seconds=10)))
    new = (
        await client.post(f"/ains/api-keys/{old['key_id']}/rotate", json={"grace_seconds": 3600}, headers=ADMIN)
    ).json()
    assert new["old_key_expires_at"] == old["expires_at"]
    clock.advance(10)
    assert (await client.get("/ains/tasks", headers=bearer(old["api_key"]))).status_code == 401


async def test_rotating_a_revoked_or_expired_or_unknown_key_is_refused(client, clock):
    revoked = await _key(client)
    await client.delete(f"/ains/api-keys/{revoked['key_id']}", headers=ADMIN)
    assert (await client.post(f"/ains/api-keys/{revoked['key_id']}/rotate", headers=ADMIN)).status_code == 404
    assert (await client.post("/ains/api-keys/key_nope/rotate", headers=ADMIN)).status_code == 404
    expiring = await _key(client, expires_at=_iso(clock.now + timedelta(seconds=5)))
    clock.advance(5)
    assert (await client.post(f"/ains/api-keys/{expiring['key_id']}/rotate", headers=ADMIN)).status_code == 409
    response = await client.post(
        f"/ains/api-keys/{revoked['key_id']}/rotate", json={"grace_seconds": -1}, headers=ADMIN
    )
    assert response.status_code == 422


async def test_an_agent_key_can_be_rotated_too(client, clock):
    agent = await register_agent(client, "agent_1")
    listed = (await client.get("/ains/api-keys?client_id=agent_1", headers=ADMIN)).json()["api_keys"]
    rotated = (
        await client.post(f"/ains/api-keys/{listed[0]['key_id']}/rotate", json={"grace_seconds": 0}, headers=ADMIN)
    ).json()
    assert rotated["api_key"].startswith("ains_agent_")
    beat = await client.post("/ains/agents/agent_1/heartbeat", json={}, headers=bearer(rotated["api_key"]))
    assert beat.status_code == 200
    assert (await client.post("/ains/agents/agent_1/heartbeat", json={}, headers=agent.headers)).status_code == 401


async def test_an_expired_key_cannot_sign_in_to_the_console_either(client, clock):
    import re

    created = await _key(client, expires_at=_iso(clock.now + timedelta(seconds=5)))
    csrf = re.compile(r'name="csrf" value="([^"]+)"')
    token = csrf.search((await client.get("/console/sign-in")).text).group(1)
    clock.advance(5)
    refused = await client.post("/console/sign-in", data={"csrf": token, "api_key": created["api_key"]})
    assert refused.status_code == 401
