"""SPEC 8: concurrent completions for one agent lose no trust update."""

import asyncio
from collections import Counter

import pytest
from sqlalchemy import select

from ains.trust.models import TrustRecord
from tests.helpers import ADMIN, claim, create_client, register_agent, submit

COMPLETIONS = 100


@pytest.fixture
def settings_overrides():
    return {"assign_lease_seconds": 600}


async def test_100_concurrent_completions_move_the_score_exactly(client, db):
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1", max_concurrency=COMPLETIONS)
    # From 0.5, twenty-five +0.02 steps reach 1.0 and the other seventy-five are clamped to nothing.
    for _ in range(COMPLETIONS):
        await submit(client, owner)
    tasks = await claim(client, agent, max_tasks=50, start=True) + await claim(client, agent, max_tasks=50, start=True)
    assert len(tasks) == COMPLETIONS

    async def complete(task):
        response = await client.post(
            f"/ains/tasks/{task['task_id']}/complete", json={"attempt": task["attempt"]}, headers=agent.headers
        )
        assert response.status_code == 200, response.text

    await asyncio.gather(*(complete(t) for t in tasks))

    summary = (await client.get("/ains/agents/agent_1/trust")).json()
    assert summary["trust_score"] == 1.0
    assert summary["metrics"]["total_tasks_completed"] == COMPLETIONS
    async with db.read() as session:
        records = list(
            await session.scalars(
                select(TrustRecord).where(TrustRecord.event_type == "task_completed").order_by(TrustRecord.seq)
            )
        )
    assert len(records) == COMPLETIONS
    for previous, record in zip(records, records[1:], strict=False):
        assert record.trust_score_before == previous.trust_score_after
        assert record.seq == previous.seq + 1
    assert records[0].trust_score_before == 0.5
    assert Counter(r.trust_delta for r in records) == {0.02: 25, 0.0: 75}
    assert sum(r.trust_delta for r in records) == pytest.approx(0.5)
    check = (await client.get("/ains/agents/agent_1/trust/verify", headers=ADMIN)).json()
    assert check == {"valid": True, "records_checked": COMPLETIONS, "first_bad_record_id": None}
