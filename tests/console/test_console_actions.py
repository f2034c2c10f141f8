"""The console's key management (admin), workflow cancellation and schedule pause/resume, over HTTP, on SQLite and
PostgreSQL: who may act, the CSRF token, the confirmation step, and what each action changes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx

from tests.console.test_console_pages import CSRF, sign_in
from tests.helpers import ADMIN, ADMIN_KEY, bearer, create_client

SECRET = re.compile(r'id="secret-value" class="secret-value" readonly value="([^"]+)"')


def _key(headers: dict[str, str]) -> str:
    return headers["Authorization"].split()[1]


async def _keys(client: httpx.AsyncClient, **params) -> dict[str, dict]:
    response = await client.get("/ains/api-keys", params={"include_revoked": "true", **params}, headers=ADMIN)
    return {row["key_id"]: row for row in response.json()["api_keys"]}


async def test_the_keys_page_lists_keys_with_their_state(client):
    alice = await create_client(client, "alice")
    expiring = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    response = await client.post(
        "/ains/api-keys",
        json={"client_id": "bob", "name": "reader", "scopes": ["tasks:read"], "expires_at": expiring},
        headers=ADMIN,
    )
    bob = response.json()
    revoked = (await client.post("/ains/api-keys", json={"client_id": "carol", "name": "old"}, headers=ADMIN)).json()
    await client.delete(f"/ains/api-keys/{revoked['key_id']}", headers=ADMIN)
    rotated = await client.post(f"/ains/api-keys/{bob['key_id']}/rotate", json={"grace_seconds": 600}, headers=ADMIN)
    assert rotated.status_code == 201, rotated.text

    await sign_in(client, ADMIN_KEY)
    page = await client.get("/console/keys")
    assert page.status_code == 200, page.text[-500:]
    assert 'href="/console/keys" aria-current="page">Keys</a>' in page.text
    text = page.text
    assert bob["key_id"] in text and rotated.json()["key_id"] in text
    assert f"replaces <code>{bob['key_id']}</code>" in text
    assert f"replaced by <code>{rotated.json()['key_id']}</code>" in text  # the old key, in its grace period
    assert "<code>tasks:read</code>" in text and "in 2 d" in text  # scopes; the new key's expiry, relative
    assert revoked["key_id"] not in text  # revoked keys only on request
    with_revoked = await client.get("/console/keys?revoked=1")
    assert revoked["key_id"] in with_revoked.text and 'badge-failed">revoked' in with_revoked.text
    only_alice = await client.get("/console/keys?client_id=alice")
    assert "alice" in only_alice.text and bob["key_id"] not in only_alice.text
    assert _key(alice) not in text  # secrets are never listed


async def test_a_client_cannot_see_or_use_the_keys_page(client):
    alice = await create_client(client, "alice")
    other = (await client.post("/ains/api-keys", json={"client_id": "bob", "name": "b"}, headers=ADMIN)).json()
    token = await sign_in(client, _key(alice))
    overview = await client.get("/console")
    assert "/console/keys" not in overview.text  # no nav link
    assert (await client.get("/console/keys")).status_code == 403
    for url, form in (
        ("/console/keys", {"client_id": "mallory", "name": "x", "scope.tasks:read": "on"}),
        (f"/console/keys/{other['key_id']}/rotate", {"grace_seconds": "0"}),
        (f"/console/keys/{other['key_id']}/revoke", {}),
    ):
        response = await client.post(url, data={"csrf": token, "confirmed": "yes", **form})
        assert response.status_code == 403, url
    keys = await _keys(client)
    assert not any(row["client_id"] == "mallory" for row in keys.values())
    assert keys[other["key_id"]]["revoked_at"] is None and len(keys) == 2


async def test_the_admin_creates_a_key_and_sees_its_secret_once(client):
    token = await sign_in(client, ADMIN_KEY)
    form = {
        "client_id": "dora",
        "name": "nightly jobs",
        "scope.tasks:read": "on",
        "scope.workflows:read": "on",
        "expires_at": "2099-01-02T03:04",
    }
    assert (await client.post("/console/keys", data=form | {"confirmed": "yes"})).status_code == 403  # no CSRF
    asked = await client.post("/console/keys", data=form | {"csrf": token})
    assert asked.status_code == 200 and "Create a key for client dora?" in asked.text
    assert not await _keys(client)  # asking changes nothing
    created = await client.post("/console/keys", data=form | {"csrf": token, "confirmed": "yes"})
    assert created.status_code == 201, created.text[-500:]
    secret = SECRET.search(created.text).group(1)
    assert "shown only this once" in created.text
    assert created.headers["cache-control"] == "no-store"
    (row,) = (await _keys(client)).values()
    assert row["client_id"] == "dora" and row["name"] == "nightly jobs"
    assert row["scopes"] == ["tasks:read", "workflows:read"]
    assert row["expires_at"].startswith("2099-01-02T03:04:00")
    # The secret works as dora's key, within its scopes, and is not shown again.
    assert (await client.get("/ains/tasks", headers=bearer(secret))).status_code == 200
    assert (await client.post("/ains/tasks", json={}, headers=bearer(secret))).status_code == 403
    assert secret not in (await client.get("/console/keys")).text
    audit = await client.get("/ains/audit-logs", params={"action": "api_key.create"}, headers=ADMIN)
    assert [entry["actor"] for entry in audit.json()["entries"]] == ["admin"]

    # What the API refuses, the console refuses, and says why.
    refused = await client.post(
        "/console/keys", data={"csrf": token, "confirmed": "yes", "client_id": "eve", "name": "n"}
    )
    assert refused.status_code == 303 and "problem=No+key+created" in refused.headers["location"]
    past = await client.post(
        "/console/keys", data=form | {"csrf": token, "confirmed": "yes", "expires_at": "2001-01-01T00:00"}
    )
    assert past.status_code == 303 and "future" in past.headers["location"]
    assert len(await _keys(client)) == 1


async def test_the_admin_rotates_and_revokes_keys(client):
    alice = await create_client(client, "alice")
    (old,) = (await _keys(client)).values()
    token = await sign_in(client, ADMIN_KEY)
    url = f"/console/keys/{old['key_id']}/rotate"
    assert (await client.post(url, data={"csrf": "forged", "confirmed": "yes"})).status_code == 403
    asked = await client.post(url, data={"csrf": token, "grace_seconds": "300"})
    assert asked.status_code == 200 and f"Rotate key {old['key_id']}?" in asked.text
    assert len(await _keys(client)) == 1
    rotated = await client.post(url, data={"csrf": token, "grace_seconds": "300", "confirmed": "yes"})
    assert rotated.status_code == 201, rotated.text[-500:]
    secret = SECRET.search(rotated.text).group(1)
    keys = await _keys(client)
    (new,) = [row for row in keys.values() if row["key_id"] != old["key_id"]]
    assert new["rotated_from"] == old["key_id"] and new["client_id"] == "alice"
    grace_end = datetime.fromisoformat(keys[old["key_id"]]["expires_at"])
    assert timedelta(seconds=250) < grace_end - datetime.now(UTC) <= timedelta(seconds=300)
    # Both keys work during the grace period.
    assert (await client.get("/ains/tasks", headers=bearer(secret))).status_code == 200
    assert (await client.get("/ains/tasks", headers=alice)).status_code == 200
    listed = await client.get("/console/keys")
    assert "rotated</span>" in listed.text and secret not in listed.text

    revoke = f"/console/keys/{old['key_id']}/revoke"
    asked = await client.post(revoke, data={"csrf": token})
    assert asked.status_code == 200 and "Yes, revoke it" in asked.text
    assert (await client.get("/ains/tasks", headers=alice)).status_code == 200
    revoked = await client.post(revoke, data={"csrf": token, "confirmed": "yes"})
    assert revoked.status_code == 303 and "revoked" in revoked.headers["location"]
    assert (await client.get("/ains/tasks", headers=alice)).status_code == 401
    assert (await client.get("/ains/tasks", headers=bearer(secret))).status_code == 200
    again = await client.post(revoke, data={"csrf": token, "confirmed": "yes"})
    assert again.status_code == 303 and "problem=Not+revoked" in again.headers["location"]
    # A rotation with a grace outside what the API takes is refused, and nothing changes.
    bad = await client.post(
        f"/console/keys/{new['key_id']}/rotate", data={"csrf": token, "grace_seconds": "-1", "confirmed": "yes"}
    )
    assert bad.status_code == 303 and "problem=Not+rotated" in bad.headers["location"]
    assert len(await _keys(client)) == 2


async def _workflow(client: httpx.AsyncClient, headers: dict[str, str]) -> dict:
    step = {"task_type": "t", "capability_required": "data:v1", "input_data": {}}
    steps = [step | {"key": "a"}, step | {"key": "b", "depends_on": ["a"]}]
    response = await client.post("/ains/workflows", json={"name": "wf", "steps": steps}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_cancel_a_workflow_from_the_console(client):
    alice = await create_client(client, "alice")
    bob = await create_client(client, "bob")
    mine = await _workflow(client, alice)
    theirs = await _workflow(client, bob)
    token = await sign_in(client, _key(alice))
    page = await client.get(f"/console/workflows/{mine['workflow_id']}")
    assert "Cancel workflow…" in page.text

    url = f"/console/workflows/{mine['workflow_id']}/cancel"
    assert (await client.post(url, data={"confirmed": "yes"})).status_code == 403
    asked = await client.post(url, data={"csrf": token, "reason": "not needed"})
    assert asked.status_code == 200 and "Yes, cancel it" in asked.text
    assert (await client.get(f"/ains/workflows/{mine['workflow_id']}", headers=alice)).json()["status"] == "RUNNING"
    done = await client.post(url, data={"csrf": token, "reason": "not needed", "confirmed": "yes"})
    assert done.status_code == 303 and "cancelled" in done.headers["location"]
    workflow = (await client.get(f"/ains/workflows/{mine['workflow_id']}", headers=alice)).json()
    assert workflow["status"] == "CANCELLED" and {s["status"] for s in workflow["steps"]} == {"CANCELLED"}
    task = (await client.get(f"/ains/tasks/{workflow['steps'][0]['task_id']}", headers=alice)).json()
    assert task["cancellation_reason"] == "not needed"
    assert "Cancel workflow…" not in (await client.get(f"/console/workflows/{mine['workflow_id']}")).text

    # Bob's workflow does not exist for Alice.
    forged = await client.post(
        f"/console/workflows/{theirs['workflow_id']}/cancel", data={"csrf": token, "confirmed": "yes"}
    )
    assert forged.status_code == 404
    assert (await client.get(f"/ains/workflows/{theirs['workflow_id']}", headers=bob)).json()["status"] == "RUNNING"


async def test_a_read_only_key_cannot_cancel_or_pause(client):
    response = await client.post(
        "/ains/api-keys",
        json={"client_id": "rita", "name": "ro", "scopes": ["workflows:read", "schedules:read"]},
        headers=ADMIN,
    )
    reader = response.json()["api_key"]
    step = {"task_type": "t", "capability_required": "data:v1", "input_data": {}, "key": "a"}
    response = await client.post(
        "/ains/workflows", json={"client_id": "rita", "name": "wf", "steps": [step]}, headers=ADMIN
    )
    workflow = response.json()
    body = {
        "client_id": "rita",
        "name": "h",
        "cron": "0 * * * *",
        "task": {"task_type": "t", "capability_required": "x:v1"},
    }
    schedule = (await client.post("/ains/schedules", json=body, headers=ADMIN)).json()
    token = await sign_in(client, reader)
    page = await client.get(f"/console/workflows/{workflow['workflow_id']}")
    assert page.status_code == 200 and "Cancel workflow" not in page.text
    response = await client.post(
        f"/console/workflows/{workflow['workflow_id']}/cancel", data={"csrf": token, "confirmed": "yes"}
    )
    assert response.status_code == 403
    listed = await client.get("/console/schedules")
    assert schedule["schedule_id"] in listed.text and "Pause…" not in listed.text
    pause = f"/console/schedules/{schedule['schedule_id']}/pause"
    assert (await client.post(pause, data={"csrf": token, "confirmed": "yes"})).status_code == 403
    assert (await client.get(f"/ains/workflows/{workflow['workflow_id']}", headers=ADMIN)).json()["status"] == "RUNNING"
    assert (await client.get(f"/ains/schedules/{schedule['schedule_id']}", headers=ADMIN)).json()["active"] is True


async def test_pause_and_resume_a_schedule_from_the_console(client):
    alice = await create_client(client, "alice")
    bob = await create_client(client, "bob")
    body = {"name": "hourly", "cron": "0 * * * *", "task": {"task_type": "t", "capability_required": "x:v1"}}
    mine = (await client.post("/ains/schedules", json=body, headers=alice)).json()
    theirs = (await client.post("/ains/schedules", json=body, headers=bob)).json()
    token = await sign_in(client, _key(alice))
    listed = await client.get("/console/schedules")
    assert "Pause…" in listed.text and theirs["schedule_id"] not in listed.text

    pause = f"/console/schedules/{mine['schedule_id']}/pause"
    assert (await client.post(pause, data={"confirmed": "yes"})).status_code == 403
    asked = await client.post(pause, data={"csrf": token})
    assert asked.status_code == 200 and "Yes, pause it" in asked.text
    assert (await client.get(f"/ains/schedules/{mine['schedule_id']}", headers=alice)).json()["active"] is True
    paused = await client.post(pause, data={"csrf": token, "confirmed": "yes"})
    assert paused.status_code == 303 and "paused" in paused.headers["location"]
    row = (await client.get(f"/ains/schedules/{mine['schedule_id']}", headers=alice)).json()
    assert row["active"] is False and row["next_run_at"] is None
    assert "Resume…" in (await client.get("/console/schedules")).text

    resumed = await client.post(
        f"/console/schedules/{mine['schedule_id']}/resume", data={"csrf": token, "confirmed": "yes"}
    )
    assert resumed.status_code == 303 and "resumed" in resumed.headers["location"]
    row = (await client.get(f"/ains/schedules/{mine['schedule_id']}", headers=alice)).json()
    assert row["active"] is True and row["next_run_at"] is not None

    forged = await client.post(
        f"/console/schedules/{theirs['schedule_id']}/pause", data={"csrf": token, "confirmed": "yes"}
    )
    assert forged.status_code == 404
    assert (await client.get(f"/ains/schedules/{theirs['schedule_id']}", headers=bob)).json()["active"] is True
    unknown = await client.post(
        f"/console/schedules/{mine['schedule_id']}/delete", data={"csrf": token, "confirmed": "yes"}
    )
    assert unknown.status_code == 404

    # The admin may pause anyone's.
    await client.post("/console/sign-out", data={"csrf": CSRF.search(listed.text).group(1)})
    token = await sign_in(client, ADMIN_KEY)
    response = await client.post(
        f"/console/schedules/{theirs['schedule_id']}/pause", data={"csrf": token, "confirmed": "yes"}
    )
    assert response.status_code == 303
    assert (await client.get(f"/ains/schedules/{theirs['schedule_id']}", headers=bob)).json()["active"] is False


async def test_hostile_key_forms_are_refused_without_a_500_or_a_change(client):
    alice = await create_client(client, "alice")
    (old,) = (await _keys(client)).values()
    token = await sign_in(client, ADMIN_KEY)
    base = {"csrf": token, "confirmed": "yes"}
    create = {"client_id": "dora", "name": "n", "scope.tasks:read": "on"}
    for form in (
        create | {"expires_at": "not a time"},
        create | {"expires_at": "9" * 400},
        create | {"client_id": "../../etc\x00"},
        create | {"name": "x" * 100_000},
    ):
        answer = await client.post("/console/keys", data=base | form)
        assert answer.status_code < 500 and answer.status_code != 201, (form, answer.status_code)
    for grace in ("-5", "soon", "1e400", "99999999999999999999"):
        answer = await client.post(f"/console/keys/{old['key_id']}/rotate", data=base | {"grace_seconds": grace})
        assert answer.status_code < 500 and answer.status_code != 201, (grace, answer.status_code)
    for key_id in ("key_nosuch", "x" * 5000, "%00"):
        answer = await client.post(f"/console/keys/{key_id}/revoke", data=base)
        assert answer.status_code < 500, (key_id, answer.status_code)
    keys = await _keys(client)
    assert list(keys) == [old["key_id"]] and keys[old["key_id"]]["revoked_at"] is None
    assert (await client.get("/ains/tasks", headers=alice)).status_code == 200
    # A scope the page does not offer is ignored, never granted.
    made = await client.post("/console/keys", data=base | create | {"scope.everything:admin": "on"})
    assert made.status_code == 201
    assert [row["scopes"] for row in (await _keys(client, client_id="dora")).values()] == [["tasks:read"]]
