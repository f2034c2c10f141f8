"""SPEC 17: submitting a workflow, reading and listing it; graphs refused with nothing stored."""

from __future__ import annotations

import pytest

from tests.helpers import ADMIN, create_client
from tests.workflows.helpers import research_workflow, step, stored_counts


@pytest.fixture
async def owner(client):
    return await create_client(client, "client_1")


async def test_a_workflow_is_stored_with_its_steps_in_dependency_order(client, owner):
    response = await client.post("/ains/workflows", json=research_workflow(), headers=owner)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["workflow_id"].startswith("wf_")
    assert body["name"] == "report" and body["status"] == "RUNNING" and body["client_id"] == "client_1"
    assert body["completed_at"] is None
    assert body["step_counts"] == {"total": 5, "completed": 0, "failed": 0, "cancelled": 0}
    keys = [s["key"] for s in body["steps"]]
    assert keys[0] == "plan" and keys[-1] == "write"
    by_key = {s["key"]: s for s in body["steps"]}
    assert by_key["plan"]["status"] == "PENDING" and by_key["plan"]["depends_on"] == []
    assert by_key["write"]["status"] == "WAITING"
    assert sorted(by_key["write"]["depends_on"]) == ["research-1", "research-2", "research-3"]
    assert all(by_key[f"research-{n}"]["status"] == "WAITING" for n in (1, 2, 3))

    again = await client.get(f"/ains/workflows/{body['workflow_id']}", headers=owner)
    assert again.status_code == 200 and again.json() == body


async def test_workflows_are_listed_newest_first_with_a_cursor(client, owner):
    ids = []
    for n in range(3):
        response = await client.post("/ains/workflows", json=research_workflow(f"w{n}"), headers=owner)
        ids.append(response.json()["workflow_id"])
    first = (await client.get("/ains/workflows", params={"limit": 2}, headers=owner)).json()
    assert len(first["workflows"]) == 2 and first["next_cursor"]
    rest = (
        await client.get("/ains/workflows", params={"limit": 2, "cursor": first["next_cursor"]}, headers=owner)
    ).json()
    listed = [w["workflow_id"] for w in first["workflows"] + rest["workflows"]]
    assert sorted(listed) == sorted(ids) and rest["next_cursor"] is None
    assert (await client.get("/ains/workflows", params={"cursor": "garbage"}, headers=owner)).status_code == 400
    running = (await client.get("/ains/workflows", params={"status": "COMPLETED"}, headers=owner)).json()
    assert running["workflows"] == []


async def test_only_the_owner_and_the_admin_see_a_workflow(client, owner):
    stranger = await create_client(client, "client_2")
    workflow = (await client.post("/ains/workflows", json=research_workflow(), headers=owner)).json()
    url = f"/ains/workflows/{workflow['workflow_id']}"
    assert (await client.get(url, headers=stranger)).status_code == 404
    assert (await client.post(f"{url}/cancel", json={}, headers=stranger)).status_code == 404
    assert (await client.get(url, headers=ADMIN)).status_code == 200
    assert (await client.get("/ains/workflows", headers=stranger)).json()["workflows"] == []
    assert len((await client.get("/ains/workflows", headers=ADMIN)).json()["workflows"]) == 1


async def test_the_admin_submits_for_a_client(client, owner):
    missing = await client.post("/ains/workflows", json=research_workflow(), headers=ADMIN)
    assert missing.status_code == 422
    response = await client.post("/ains/workflows", json=research_workflow() | {"client_id": "client_1"}, headers=ADMIN)
    assert response.status_code == 201 and response.json()["client_id"] == "client_1"


@pytest.mark.parametrize(
    ("steps", "named"),
    [
        ([step("a", "c"), step("b", "a"), step("c", "b")], "cycle"),
        ([step("a", "a")], "cycle"),
        ([step("a"), step("b", "nope")], "'nope'"),
        ([step("a"), step("a")], "duplicate step key 'a'"),
        ([step(f"s{n}") for n in range(101)], "101 steps"),
        ([step("a"), step("b", *[f"x{n}" for n in range(101)])], "at most 100"),
    ],
    ids=["cycle", "self", "unknown", "duplicate", "too-many-steps", "too-many-depends-on"],
)
async def test_a_bad_graph_is_refused_naming_it_and_nothing_is_stored(client, owner, db, steps, named):
    before = await stored_counts(db)
    response = await client.post("/ains/workflows", json={"name": "bad", "steps": steps}, headers=owner)
    assert response.status_code == 422, response.text
    assert named in str(response.json()["detail"])
    assert await stored_counts(db) == before


async def test_a_bad_step_body_is_refused_and_nothing_is_stored(client, owner, db):
    before = await stored_counts(db)
    body = {"name": "bad", "steps": [step("a"), step("b", "a", priority=11)]}
    assert (await client.post("/ains/workflows", json=body, headers=owner)).status_code == 422
    body = {"name": "bad", "steps": [step("a", run_at="2030-01-01T00:00:00Z", delay_seconds=5)]}
    assert (await client.post("/ains/workflows", json=body, headers=owner)).status_code == 422
    assert await stored_counts(db) == before


async def test_a_key_without_the_workflow_scopes_is_refused(client):
    reader = await create_client(client, "client_3", scopes=["workflows:read"])
    response = await client.post("/ains/workflows", json=research_workflow(), headers=reader)
    assert response.status_code == 403 and "workflows:write" in response.json()["detail"]
    assert (await client.get("/ains/workflows", headers=reader)).status_code == 200
