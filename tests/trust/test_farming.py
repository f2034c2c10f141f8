"""Trust flows from trusted submitters: an agent's outcomes move its trust only on tasks from the admin, a
client, or another agent that was `high` or better when it submitted. Farming one's own tasks, or a ring of
new agents feeding each other, earns (and costs) nothing; the attempts are still counted.

The farming runs as an attacker would run it: over real HTTP against `ains serve`, on both databases."""

import pytest

from tests.helpers import ADMIN, claim, create_client, register_agent, submit


@pytest.fixture
def client(served_client):
    return served_client


async def _trust(client, agent_id):
    summary = (await client.get(f"/ains/agents/{agent_id}/trust")).json()
    history = (await client.get(f"/ains/agents/{agent_id}/trust/history")).json()["records"]
    return summary["trust_score"], len(history), summary["metrics"]


async def _work(client, agent, *, fail=False):
    for task in await claim(client, agent, max_tasks=5, start=True):
        if fail:
            body = {"attempt": task["attempt"], "error_message": "no", "retryable": False}
            response = await client.post(f"/ains/tasks/{task['task_id']}/fail", json=body, headers=agent.headers)
        else:
            body = {"attempt": task["attempt"], "result_data": {}}
            response = await client.post(f"/ains/tasks/{task['task_id']}/complete", json=body, headers=agent.headers)
        assert response.status_code == 200, response.text


async def test_an_agent_completing_its_own_tasks_earns_nothing(client):
    farmer = await register_agent(client, "farmer")
    for _ in range(5):
        await submit(client, farmer.headers, client_id="farmer")
    await _work(client, farmer)
    score, records, metrics = await _trust(client, "farmer")
    assert (score, records) == (0.5, 0)
    assert metrics["total_tasks_completed"] == 5


async def test_a_ring_of_untrusted_agents_earns_and_costs_nothing(client):
    feeder = await register_agent(client, "feeder", capabilities=["other:v1"])
    worker = await register_agent(client, "worker")
    for _ in range(3):
        await submit(client, feeder.headers, client_id="feeder")
    await _work(client, worker)
    for _ in range(2):
        await submit(client, feeder.headers, client_id="feeder")
    await _work(client, worker, fail=True)  # nor can a feeder drag another agent down
    score, records, metrics = await _trust(client, "worker")
    assert (score, records) == (0.5, 0)
    assert (metrics["total_tasks_completed"], metrics["total_tasks_failed"]) == (3, 2)


async def test_work_from_a_client_or_a_highly_trusted_agent_moves_trust(client):
    owner = await create_client(client)
    feeder = await register_agent(client, "feeder", capabilities=["other:v1"])
    worker = await register_agent(client, "worker")
    await submit(client, owner)
    await _work(client, worker)
    assert (await _trust(client, "worker"))[:2] == (0.52, 1)
    # The feeder becomes `high`: what it submits from then on counts; what it submitted before does not.
    before = await submit(client, feeder.headers, client_id="feeder")
    raised = await client.post(
        "/ains/agents/feeder/trust/adjust", json={"delta": 0.25, "reason": "vetted"}, headers=ADMIN
    )
    assert raised.status_code == 200
    after = await submit(client, feeder.headers, client_id="feeder")
    claimed = await claim(client, worker, max_tasks=5, start=True)
    assert {t["task_id"] for t in claimed} == {before["task_id"], after["task_id"]}
    for task in claimed:
        body = {"attempt": task["attempt"], "result_data": {}}
        done = await client.post(f"/ains/tasks/{task['task_id']}/complete", json=body, headers=worker.headers)
        assert done.status_code == 200
    score, records, _ = await _trust(client, "worker")
    assert (score, records) == (0.54, 2)
