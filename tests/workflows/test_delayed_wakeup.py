"""SPEC 17: a waiting claim is woken when a delayed task comes due, not by its next look-again.

The look-again (`wakeup_fallback_seconds`) is set far beyond the claim's wait, so the
claim gets the task only if the task's coming due woke it.
"""

from __future__ import annotations

import time

import pytest

from tests.helpers import claim, create_client, register_agent, submit

WAIT_SECONDS = 30


@pytest.fixture
def settings_overrides():
    return {"wakeup_fallback_seconds": 60}


async def test_a_waiting_claim_is_woken_when_a_delayed_task_comes_due(client):
    owner = await create_client(client, "client_1")
    agent = await register_agent(client, "agent_1")
    task = await submit(client, owner, delay_seconds=1)
    assert await claim(client, agent) == []  # not yet due
    started = time.monotonic()
    claimed = await claim(client, agent, wait_seconds=WAIT_SECONDS)
    assert [t["task_id"] for t in claimed] == [task["task_id"]]
    # Woken when the task came due (a second after submission), not by the last look as its wait ended.
    assert time.monotonic() - started < WAIT_SECONDS / 2
