"""`task.created` reaches an agent's webhook only when that agent could claim the task: its capability, the
task's `min_trust_score`, and the agent's trust level (nothing below `low`; on probation, priority ≤ 7 only)."""

import pytest

from tests.helpers import ADMIN, create_client, register_agent, submit, wait_for
from tests.webhooks.test_delivery import deliveries, hook


@pytest.fixture
def settings_overrides():
    return {"webhook_allow_private": True}


async def _adjust(client, agent_id: str, delta: float) -> None:
    response = await client.post(
        f"/ains/agents/{agent_id}/trust/adjust", json={"delta": delta, "reason": "test"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text


async def test_task_created_goes_only_to_agents_that_could_claim_it(client, receivers):
    owner = await create_client(client, "client_1")
    heard, hooks = {}, {}
    # trust 0.8 (high), 0.4 (low: probation), 0.2 (very_low: claims nothing), 0.5 with another capability
    for agent_id, delta, capabilities in (
        ("trusted", 0.3, ["data:v1"]),
        ("probation", -0.1, ["data:v1"]),
        ("blocked", -0.3, ["data:v1"]),
        ("elsewhere", 0.0, ["image:v1"]),
    ):
        agent = await register_agent(client, agent_id, capabilities=capabilities)
        if delta:
            await _adjust(client, agent_id, delta)
        heard[agent_id] = receivers()
        made = await hook(
            client, agent.headers, f"/ains/agents/{agent_id}", heard[agent_id].url, events=["task.created"]
        )
        hooks[agent_id] = (agent.headers, made["webhook_id"])

    ordinary = await submit(client, owner, priority=5)
    urgent = await submit(client, owner, priority=9)
    demanding = await submit(client, owner, priority=5, min_trust_score=0.75)
    expected = {
        "trusted": {ordinary["task_id"], urgent["task_id"], demanding["task_id"]},
        "probation": {ordinary["task_id"]},
        "blocked": set(),
        "elsewhere": set(),
    }

    # Deliveries are written in the submitting transaction, so the lists are complete now.
    for agent_id, ids in expected.items():
        headers, webhook_id = hooks[agent_id]
        listed = await deliveries(client, headers, webhook_id)
        assert {d["task_id"] for d in listed} == ids, agent_id

    async def all_arrived():
        return all(len(heard[a].requests) >= len(ids) for a, ids in expected.items())

    assert await wait_for(all_arrived, timeout=20)
    for agent_id, ids in expected.items():
        assert {r.payload["task_id"] for r in heard[agent_id].requests} == ids, agent_id
