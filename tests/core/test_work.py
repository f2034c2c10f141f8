"""The unit of work: one transaction acting at one moment, and what its commit sets off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from ains.audit.models import AuditLog
from ains.core import clock as clock_module
from ains.tasks.models import Task, TaskAttempt
from tests.helpers import ADMIN, claim, create_client, register_agent, submit


class TickingClock:
    """Every read of the clock is a millisecond later than the last: a rule that reads it twice disagrees."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def ticking_clock():
    ticking = TickingClock()
    clock_module.set_clock(ticking)
    try:
        yield ticking
    finally:
        clock_module.set_clock(None)


async def test_a_cancel_stamps_the_task_its_attempt_and_its_audit_entry_with_one_moment(client, db, ticking_clock):
    owner = await create_client(client)
    agent = await register_agent(client)
    task = await submit(client, owner)
    await claim(client, agent, start=True)

    response = await client.post(f"/ains/tasks/{task['task_id']}/cancel", json={"reason": "no"}, headers=ADMIN)
    assert response.status_code == 200, response.text

    async with db.read() as session:
        stored = await session.scalar(select(Task).where(Task.task_id == task["task_id"]))
        attempt = await session.scalar(select(TaskAttempt).where(TaskAttempt.task_id == task["task_id"]))
        entry = await session.scalar(
            select(AuditLog).where(AuditLog.action == "task.cancel", AuditLog.target_id == task["task_id"])
        )
    assert stored is not None and attempt is not None and entry is not None
    moment = stored.cancelled_at
    assert stored.updated_at == moment
    assert attempt.finished_at == moment
    assert entry.created_at == moment


async def test_after_commit_hooks_run_once_committed_and_never_after_a_rollback(app):
    ctx = app.state.ctx
    ran: list[str] = []

    async with ctx.work() as work:
        work.after_commit(lambda: ran.append("committed"))
        assert ran == []  # not before the commit
    assert ran == ["committed"]

    with pytest.raises(RuntimeError):
        async with ctx.work() as work:
            work.after_commit(lambda: ran.append("rolled back"))
            raise RuntimeError("the request failed")
    assert ran == ["committed"]


async def test_work_at_another_moment_stays_in_the_same_transaction(app):
    ctx = app.state.ctx
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with ctx.work() as work:
        later = work.at(moment)
        assert later.now == moment
        assert later.session is work.session
        assert later.settings is work.settings
        later.after_commit(lambda: None)
        assert len(work.state.after_commit) == 1  # one transaction state, whichever moment acts in it


async def test_a_unit_of_work_given_a_moment_acts_at_it(app):
    moment = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    async with app.state.ctx.work(moment) as work:
        assert work.now == moment
    async with app.state.ctx.reading(moment) as work:
        assert work.now == moment


async def test_a_read_only_unit_of_work_refuses_what_only_a_commit_could_set_off(app):
    with pytest.raises(AssertionError, match="read-only"):
        async with app.state.ctx.reading() as work:
            work.after_commit(lambda: None)
