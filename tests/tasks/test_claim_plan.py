"""How a claim reads the queue on PostgreSQL: only the head of each capability, never the whole queue.

A claim used to match `capability_required = ANY(:capabilities)` over every pending task
and sort them all, so its cost grew with the queue (35-130 ms a claim at 12,000
queued). It now walks each capability's pending tasks in queue order and merges the
heads. These tests count the rows the plan reads (no timing), and check that rows a
merge locks and leaves are found again at once by a claimer that skipped them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import text

from ains.core.clock import utcnow
from ains.tasks import lifecycle, queries
from ains.tasks.claim import claim_once
from tests.helpers import claim, create_client, register_agent, submit, task_body

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

QUEUED_PER_CAPABILITY = 300


async def _queue(client, owner: dict[str, str], capability: str, count: int) -> None:
    """`count` tasks for `capability`, in batches of 100."""
    for _ in range(count // 100):
        batch = {"tasks": [task_body(capability_required=capability)] * 100}
        assert (await client.post("/ains/tasks/batch", json=batch, headers=owner)).status_code == 200


async def _explain_claim(
    db, app, *, capabilities: list[str], max_tasks: int, free: int, before: str | None = None
) -> list[Any]:
    """The plan of agent_1's claim statement, run by EXPLAIN ANALYZE and rolled back (nothing of it stays);
    `before` runs first in the same transaction."""
    clause = queries.CLAIM_PICK_AND_ASSIGN.element
    explain = text(f"EXPLAIN (ANALYZE, FORMAT JSON) {clause.text}").bindparams(*clause._bindparams.values())
    now = utcnow()
    params = {
        "capabilities": capabilities,
        "now": now,
        "trust_score": 0.5,
        "max_priority": 10,
        "max_tasks": max_tasks,
        "free": free,
        "agent_id": "agent_1",
        **lifecycle.claim_columns(now, app.state.ctx.settings, start=False),
    }
    async with db.engine.connect() as connection:
        if before is not None:
            await connection.execute(text(before))
        plan = (await connection.execute(explain, params)).scalar_one()
        await connection.rollback()
    return json.loads(plan) if isinstance(plan, str) else plan


def _scanned_rows(node: dict[str, Any]) -> int:
    """Rows every scan of `tasks` in this plan returned, over all its loops."""
    own = 0
    if node.get("Relation Name") == "tasks" and "Scan" in node["Node Type"]:
        own = node["Actual Rows"] * node["Actual Loops"]
    return own + sum(_scanned_rows(child) for child in node.get("Plans", ()))


async def test_a_claim_reads_the_head_of_each_capability_not_the_whole_queue(client, db, app):
    owner = await create_client(client)
    await register_agent(client, "agent_1", capabilities=["a:v1", "b:v1"], max_concurrency=100)
    for capability in ("a:v1", "b:v1"):
        await _queue(client, owner, capability, QUEUED_PER_CAPABILITY)
    plan = await _explain_claim(db, app, capabilities=["a:v1", "b:v1"], max_tasks=3, free=100, before="ANALYZE tasks")
    top = plan[0]["Plan"]
    assert top["Actual Rows"] == 3  # it did claim three
    # Three wanted from two capabilities: at most three heads each, and the three rows it then updates.
    assert _scanned_rows(top) <= 3 * 2 + 3, json.dumps(plan, indent=1)


def _rows_read(node: dict[str, Any]) -> int:
    """Rows and index entries every scan in this plan read (kept or filtered out), over all its loops."""
    own = 0
    if "Scan" in node["Node Type"]:
        read = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        own = (read + node.get("Rows Removed by Index Recheck", 0)) * node.get("Actual Loops", 1)
    return own + sum(_rows_read(child) for child in node.get("Plans", ()))


def _subplan(node: dict[str, Any], name: str) -> dict[str, Any] | None:
    if node.get("Subplan Name") == name:
        return node
    return next((found for child in node.get("Plans", ()) if (found := _subplan(child, name))), None)


async def test_counting_what_an_agent_holds_reads_only_what_it_holds(client, db, app):
    """The claim's budget counts the agent's ASSIGNED and ACTIVE tasks: not the tasks it finished, nor those others
    hold, nor the queue."""
    owner = await create_client(client)
    agent = await register_agent(client, "agent_1", capabilities=["a:v1"], max_concurrency=1000)
    other = await register_agent(client, "agent_2", capabilities=["b:v1"], max_concurrency=1000)
    await _queue(client, owner, "b:v1", 400)
    for _ in range(2):  # 100 held by another agent, 300 queued
        await claim(client, other, max_tasks=50)
    await _queue(client, owner, "a:v1", 400)
    for _ in range(8):  # 400 finished
        taken = await claim(client, agent, max_tasks=50, start=True)
        items = [{"task_id": task["task_id"], "attempt": task["attempt"]} for task in taken]
        response = await client.post("/ains/tasks/complete-batch", json={"items": items}, headers=agent.headers)
        assert response.status_code == 200, response.text
    for _ in range(3):
        await submit(client, owner, capability_required="a:v1")
    assert len(await claim(client, agent, max_tasks=2)) == 2  # 2 held
    async with db.engine.connect() as connection:
        # Statistics and the visibility map, as autovacuum keeps them (outside a transaction: VACUUM must be).
        await (await connection.execution_options(isolation_level="AUTOCOMMIT")).execute(text("VACUUM ANALYZE tasks"))
    plan = await _explain_claim(db, app, capabilities=["a:v1"], max_tasks=1, free=1000)
    assert plan[0]["Plan"]["Actual Rows"] == 1
    budget = _subplan(plan[0]["Plan"], "CTE budget")
    assert budget is not None, json.dumps(plan, indent=1)
    # The two held tasks (an index scan may count each twice: its entries, then the rows).
    assert _rows_read(budget) <= 2 * 2, json.dumps(budget, indent=1)


async def test_rows_a_merge_locked_and_left_are_claimed_at_once_by_one_who_skipped_them(client, db, app):
    ctx = app.state.ctx
    owner = await create_client(client)
    await register_agent(client, "agent_both", capabilities=["a:v1", "b:v1"])
    waiter = await register_agent(client, "agent_b", capabilities=["b:v1"])
    first = await submit(client, owner, capability_required="a:v1")
    second = await submit(client, owner, capability_required="b:v1")
    async with ctx.work() as work:
        # agent_both takes the older task; its claim also locked the head of b:v1, which it leaves.
        held = await claim_once(work, "agent_both", 1, start=False)
        assert [t.task_id for t in held.tasks] == [first["task_id"]]
        waiting = asyncio.create_task(claim(client, waiter, wait_seconds=10))
        for _ in range(200):  # until the waiter has skipped the locked row and subscribed
            if ctx.signals.has_waiters():
                break
            await asyncio.sleep(0.01)
        assert ctx.signals.has_waiters()
        await asyncio.sleep(0.3)  # its look right after subscribing skips the row too; then it parks
    # Committed: the waiter is told, and takes the row it skipped long before its fallback poll (60 s).
    taken = await asyncio.wait_for(waiting, timeout=9)
    assert [t["task_id"] for t in taken] == [second["task_id"]]


@pytest.fixture
def settings_overrides():
    # No duty runs to wake the waiter by the way: only the claim's own announcement may.
    return {"wakeup_fallback_seconds": 60, "run_background": False}


async def test_a_claim_announces_the_heads_it_left_only_when_it_took_all_it_could(client, app):
    """Taking fewer than it may, a claim took every head it locked: nobody skipped a row it left, so it wakes
    nobody. Taking as many as it may, it may have locked and left heads: it announces its capabilities."""
    ctx = app.state.ctx
    owner = await create_client(client)
    await register_agent(client, "agent_both", capabilities=["a:v1", "b:v1"], max_concurrency=10)
    await submit(client, owner, capability_required="a:v1")
    await submit(client, owner, capability_required="b:v1")
    await submit(client, owner, capability_required="b:v1")

    async def announced(max_tasks: int) -> tuple[int, set[str]]:
        async with ctx.work() as work:
            result = await claim_once(work, "agent_both", max_tasks, start=False)
            return len(result.tasks), {subject for kind, subject in work.state.announcements if kind == "task"}

    assert await announced(2) == (2, {"a:v1", "b:v1"})  # took its all: the third task's head was locked and left
    assert await announced(5) == (1, set())  # one left, fewer than five: nothing locked and left
