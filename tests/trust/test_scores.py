"""SPEC 8 scores: +0.02 per completed attempt, −0.05 per failed one (failure, timeout, agent lost),
admin adjustments, clamping, records, metrics, history, leaderboard; cancellations change nothing."""

import pytest

from tests.helpers import ADMIN, claim, create_client, register_agent, submit, wait_for


@pytest.fixture
def settings_overrides():
    return {"timeout_check_seconds": 0.2, "retry_exponential_base_seconds": 0, "agent_stale_seconds": 3}


async def trust(client, agent_id):
    return (await client.get(f"/ains/agents/{agent_id}/trust")).json()


async def history(client, agent_id, **params):
    return (await client.get(f"/ains/agents/{agent_id}/trust/history", params=params)).json()


async def run_task(client, owner, agent, outcome="complete", **task_fields):
    # No retries unless asked, so a failed task does not come back to the next claim.
    task = await submit(client, owner, **({"max_retries": 0} | task_fields))
    (claimed,) = await claim(client, agent, start=True)
    assert claimed["task_id"] == task["task_id"]
    if outcome == "complete":
        await client.post(f"/ains/tasks/{task['task_id']}/complete", json={"result_data": {}}, headers=agent.headers)
    elif outcome == "fail":
        await client.post(f"/ains/tasks/{task['task_id']}/fail", json={"error_message": "nope"}, headers=agent.headers)
    return task


async def test_completion_and_failure_move_the_score_with_records(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    done = await run_task(client, owner, agent)
    summary = await trust(client, "agent_1")
    assert summary["trust_score"] == 0.52 and summary["trust_level"] == "medium"
    failed = await run_task(client, owner, agent, "fail")
    assert (await trust(client, "agent_1"))["trust_score"] == 0.47
    records = (await history(client, "agent_1"))["records"]
    assert [
        (r["event_type"], r["task_id"], r["trust_delta"], r["trust_score_before"], r["trust_score_after"])
        for r in records
    ] == [
        ("task_failed", failed["task_id"], -0.05, 0.52, 0.47),
        ("task_completed", done["task_id"], 0.02, 0.5, 0.52),
    ]
    assert records[0]["reason"] == "nope" and records[0]["record_id"] and records[0]["created_at"].endswith("Z")
    assert (await client.get("/ains/agents/agent_1")).json()["trust_level"] == "low"


async def test_timeout_and_lost_agent_cost_trust(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    await run_task(client, owner, agent, "none", timeout_seconds=1, max_retries=0)

    async def recorded(kind):
        records = (await history(client, "agent_1"))["records"]
        return [r for r in records if r["event_type"] == kind]

    (timeout,) = await wait_for(lambda: recorded("task_timeout"), timeout=10)
    assert timeout["trust_delta"] == -0.05 and timeout["trust_score_after"] == 0.45
    await run_task(client, owner, agent, "none", max_retries=0)
    # Silent now: the agent is lost and its active task fails.
    lost = await wait_for(lambda: recorded("task_failed"), timeout=10)
    assert lost[0]["reason"] == "agent lost" and lost[0]["trust_score_after"] == 0.4


async def test_cancellation_never_changes_trust(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    task = await run_task(client, owner, agent, "none")
    await client.post(f"/ains/tasks/{task['task_id']}/cancel", json={"reason": "changed my mind"}, headers=owner)
    assert (await trust(client, "agent_1"))["trust_score"] == 0.5
    assert (await history(client, "agent_1"))["records"] == []


async def test_metrics_follow_the_work(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    empty = (await trust(client, "agent_1"))["metrics"]
    assert empty == {
        "total_tasks_completed": 0,
        "total_tasks_failed": 0,
        "success_rate": 0.0,
        "avg_completion_time_seconds": 0.0,
        "last_task_completed_at": None,
    }
    for outcome in ("complete", "complete", "complete", "fail"):
        await run_task(client, owner, agent, outcome)
    metrics = (await trust(client, "agent_1"))["metrics"]
    assert metrics["total_tasks_completed"] == 3 and metrics["total_tasks_failed"] == 1
    assert metrics["success_rate"] == 0.75
    assert metrics["avg_completion_time_seconds"] > 0 and metrics["last_task_completed_at"].endswith("Z")


async def test_admin_adjusts_with_clamping_and_audit(client):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1")
    url = "/ains/agents/agent_1/trust/adjust"
    response = await client.post(url, json={"delta": 0.3, "reason": "vetted"}, headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["trust_score"] == 0.8 and response.json()["trust_level"] == "high"
    assert response.json()["record"]["event_type"] == "manual_adjustment"
    clamped = (await client.post(url, json={"delta": 1.0, "reason": "max"}, headers=ADMIN)).json()
    assert clamped["trust_score"] == 1.0 and clamped["record"]["trust_delta"] == 0.2
    floor = (await client.post(url, json={"delta": -1.0, "reason": "min"}, headers=ADMIN)).json()
    assert floor["trust_score"] == 0.0 and floor["trust_level"] == "very_low"
    for bad in (
        {"delta": 1.5, "reason": "x"},
        {"delta": -1.01, "reason": "x"},
        {"delta": "0.1", "reason": "x"},
        {"delta": 0.1},
        {"delta": 0.1, "reason": ""},
    ):
        assert (await client.post(url, json=bad, headers=ADMIN)).status_code == 422, bad
    for headers in (owner, agent.headers):
        assert (await client.post(url, json={"delta": 0.1, "reason": "x"}, headers=headers)).status_code == 403
    assert (await client.post(url, json={"delta": 0.1, "reason": "x"})).status_code == 401
    missing = "/ains/agents/agent_9/trust/adjust"
    assert (await client.post(missing, json={"delta": 0.1, "reason": "x"}, headers=ADMIN)).status_code == 404
    audit = (await client.get("/ains/audit-logs", params={"action": "trust.adjust"}, headers=ADMIN)).json()["entries"]
    assert [e["details"]["reason"] for e in audit] == ["min", "max", "vetted"]


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (0.29, "very_low"),
        (0.3, "low"),
        (0.49, "low"),
        (0.5, "medium"),
        (0.69, "medium"),
        (0.7, "high"),
        (0.89, "high"),
        (0.9, "excellent"),
    ],
)
async def test_levels_at_the_boundaries_through_the_api(client, score, level):
    await register_agent(client, "agent_1")
    url = "/ains/agents/agent_1/trust/adjust"
    await client.post(url, json={"delta": -1.0, "reason": "reset"}, headers=ADMIN)
    response = await client.post(url, json={"delta": score, "reason": "set"}, headers=ADMIN)
    assert response.json()["trust_score"] == score
    assert (await trust(client, "agent_1"))["trust_level"] == level


async def test_history_is_newest_first_and_paginated(client):
    await register_agent(client, "agent_1")
    for n in range(5):
        await client.post("/ains/agents/agent_1/trust/adjust", json={"delta": 0.01, "reason": f"r{n}"}, headers=ADMIN)
    first = await history(client, "agent_1", limit=2)
    second = await history(client, "agent_1", limit=2, cursor=first["next_cursor"])
    third = await history(client, "agent_1", limit=2, cursor=second["next_cursor"])
    reasons = [r["reason"] for page in (first, second, third) for r in page["records"]]
    assert reasons == ["r4", "r3", "r2", "r1", "r0"] and third["next_cursor"] is None
    assert (await client.get("/ains/agents/agent_9/trust/history")).status_code == 404
    assert (await client.get("/ains/agents/agent_9/trust")).status_code == 404


async def test_leaderboard_orders_by_score_then_completed(client):
    owner = await create_client(client)
    a = await register_agent(client, "agent_a", display_name="A")
    b = await register_agent(client, "agent_b")
    await register_agent(client, "agent_c")
    await run_task(client, owner, a)  # 0.52, 1 completed
    await run_task(client, owner, b)
    await run_task(client, owner, b, "fail")  # 0.47
    await client.post("/ains/agents/agent_b/trust/adjust", json={"delta": 0.05, "reason": "tie"}, headers=ADMIN)
    # agent_b now 0.52 with 1 completed; give it one more completion to break the tie its way.
    await run_task(client, owner, b)
    await client.post("/ains/agents/agent_b/trust/adjust", json={"delta": -0.02, "reason": "tie"}, headers=ADMIN)
    board = (await client.get("/ains/agents/leaderboard")).json()["leaderboard"]
    assert [e["agent_id"] for e in board] == ["agent_b", "agent_a", "agent_c"]
    assert board[0] == {
        "agent_id": "agent_b",
        "display_name": None,
        "trust_score": 0.52,
        "trust_level": "medium",
        "total_tasks_completed": 2,
        "success_rate": pytest.approx(0.6667, abs=1e-4),
    }
    assert board[1]["display_name"] == "A"
    assert [
        e["agent_id"] for e in (await client.get("/ains/agents/leaderboard", params={"limit": 1})).json()["leaderboard"]
    ] == ["agent_b"]
    with_work = (await client.get("/ains/agents/leaderboard", params={"min_tasks": 2})).json()["leaderboard"]
    assert [e["agent_id"] for e in with_work] == ["agent_b"]
    assert (await client.get("/ains/agents/leaderboard", params={"limit": 0})).status_code == 422
