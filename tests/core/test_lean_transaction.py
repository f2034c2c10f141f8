"""Lean transactions (`Database.transaction(lean=True)`): PostgreSQL's driver connection behind a `DriverSession`."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import make_url, select, text

from ains.core import signals
from ains.core.database import Database, DriverRow, driver_connection, note_changed_key
from ains.core.signals import Wakeups
from ains.tasks.models import Task

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

_MAKE = text("CREATE TEMP TABLE lean_probe (n INTEGER, doc JSONB, at TIMESTAMPTZ) ON COMMIT DROP")
_PUT = text("INSERT INTO lean_probe (n, doc, at) VALUES (:n, CAST(:doc AS JSONB), now()) RETURNING n, doc, at")


async def test_rows_read_like_sqlalchemys_and_json_comes_back_decoded(db):
    async with db.transaction(lean=True) as session:
        await session.execute(_MAKE)
        row = (await session.execute(_PUT, {"n": 7, "doc": '{"a": [1, 2]}'})).first()
        assert isinstance(row, DriverRow)
        assert (row.n, row.doc, row[0]) == (7, {"a": [1, 2]}, 7)
        assert row._mapping["doc"] == {"a": [1, 2]}
        assert row.at.utcoffset().total_seconds() == 0
        n, doc, _at = row  # unpacked by position, as the services unpack rows
        assert (n, doc) == (7, {"a": [1, 2]})
        with pytest.raises(AttributeError):
            _ = row.missing


async def test_anything_but_plain_sql_is_refused(db):
    with pytest.raises(TypeError, match="plain SQL only"):
        async with db.transaction(lean=True) as session:
            await session.execute(select(Task.task_id))


async def test_an_error_rolls_the_whole_transaction_back_and_sets_nothing_off(db):
    heard: list[str] = []
    db.wakeups = db.wakeups or Wakeups()
    db.wakeups.watch(signals.DEADLINE, lambda subject, _value: heard.append(subject))
    insert = text("INSERT INTO lean_kept (n) VALUES (:n)")
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE lean_kept (n INTEGER)"))
    try:
        with pytest.raises(RuntimeError):
            async with db.transaction(lean=True) as session:
                await session.execute(insert, {"n": 1})
                signals.announce_deadline(session, "lean_probe", datetime.now(UTC))
                raise RuntimeError("the service failed")
        async with db.transaction(lean=True) as session:
            await session.execute(insert, {"n": 2})
            signals.announce_deadline(session, "lean_probe", datetime.now(UTC))
            note_changed_key(session, "task", "task_x")
        async with db.read() as session:
            kept = list(await session.scalars(text("SELECT n FROM lean_kept")))
    finally:
        async with db.transaction() as session:
            await session.execute(text("DROP TABLE lean_kept"))
    assert kept == [2]
    assert [kind for kind in heard if kind == "lean_probe"] == ["lean_probe"]  # the committed transaction's only


async def test_a_statement_made_per_call_is_compiled_for_itself(db):
    """Statements are kept compiled by identity; a new statement at a reused address must not get an old text."""
    async with db.transaction(lean=True) as session:
        for n in range(50):
            row = (await session.execute(text(f"SELECT {n} AS n, CAST(:m AS INTEGER) AS m"), {"m": n * 2})).first()
            assert (row.n, row.m) == (n, n * 2)


async def test_a_unit_of_work_that_needs_a_session_runs_again_in_one(app, db):
    """`AppContext.run(..., lean=True)`: a Core statement ends the lean try (rolled back, nothing kept) and the
    whole unit of work runs again in a session, once."""
    ctx = app.state.ctx
    tries: list[str] = []

    async def action(work):
        tries.append(type(work.session).__name__)
        await work.session.execute(text("INSERT INTO lean_runs (n) VALUES (:n)"), {"n": len(tries)})
        return list(await work.session.scalars(select(Task.task_id).limit(1)))

    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE lean_runs (n INTEGER)"))
    try:
        assert await ctx.run(action, lean=True) == []
        async with db.read() as session:
            kept = list(await session.scalars(text("SELECT n FROM lean_runs")))
    finally:
        async with db.transaction() as session:
            await session.execute(text("DROP TABLE lean_runs"))
    assert tries == ["DriverSession", "AsyncSession"]
    assert kept == [2]  # only the second try's row


async def test_any_other_part_of_a_session_also_runs_the_unit_of_work_again_in_one(app):
    """A lean path that reaches for a session method the DriverSession does not offer (here `connection()`)
    runs again in a session instead of failing with an AttributeError (a 500)."""
    ctx = app.state.ctx
    tries: list[str] = []

    async def action(work):
        tries.append(type(work.session).__name__)
        await work.session.connection()
        return "done"

    assert await ctx.run(action, lean=True) == "done"
    assert tries == ["DriverSession", "AsyncSession"]


async def test_a_unit_of_work_that_committed_is_never_run_again(app):
    """What follows a lean commit (its after-commit hooks) raising NotPlainSQL must not send the already committed
    unit of work round again in a session: it is an error, raised once."""
    from ains.core.database import NotPlainSQL

    ctx = app.state.ctx
    tries: list[str] = []

    def hook():
        raise NotPlainSQL("a hook that reached for the session after the commit")

    async def action(work):
        tries.append(type(work.session).__name__)
        work.after_commit(hook)
        return "done"

    with pytest.raises(NotPlainSQL):
        await ctx.run(action, lean=True)
    assert tries == ["DriverSession"]


async def test_a_connection_left_inside_a_transaction_is_not_returned_to_the_pool(db):
    """A lean transaction whose rollback failed or was cancelled leaves its connection inside it: the next user
    must not run in it."""
    async with driver_connection(db.engine) as connection:
        abandoned = connection.get_server_pid()
        await connection.execute("BEGIN; CREATE TEMP TABLE left_open (n INTEGER)")
    for _ in range(3):
        async with driver_connection(db.engine) as connection:
            assert not connection.is_in_transaction()
            assert connection.get_server_pid() != abandoned
            assert await connection.fetchval("SELECT to_regclass('pg_temp.left_open')") is None


async def _server_states(url: str, pids: list[int]) -> list[str]:
    """What the server says each of these backends is doing (`idle`, `idle in transaction`, …), seen from a
    connection of its own; a backend that is gone is not listed."""
    observer = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        return [row["state"] for row in await observer.fetch(_STATES, pids)]
    finally:
        await observer.close()


_STATES = "SELECT state FROM pg_stat_activity WHERE pid = ANY($1::int[])"


@pytest.mark.parametrize("cancelled_at", ["BEGIN", "COMMIT"])
async def test_a_lean_transaction_cancelled_midway_leaves_no_connection_inside_a_transaction(
    backend, postgres_only_url, monkeypatch, cancelled_at
):
    """Cancelled while its BEGIN or COMMIT is on the wire (a request given up at shutdown, or by a timeout around
    it), a lean transaction cannot know where the server got to: its connection is closed, never pooled inside a
    transaction the next user would run in (found by a review: after a cancelled BEGIN every session on that
    connection failed)."""
    db = Database(postgres_only_url)
    original = asyncpg.connection.Connection.execute
    sent = asyncio.Event()

    async def execute(self, query, *args, **kwargs):
        if query.startswith(cancelled_at):
            sent.set()  # the query goes out below, and the caller waits for the server's answer
        return await original(self, query, *args, **kwargs)

    async def unit_of_work() -> None:
        async with db.transaction(lean=True) as session:
            await session.execute(text("SELECT 1"))

    try:
        await unit_of_work()  # a pooled connection to begin with
        monkeypatch.setattr(asyncpg.connection.Connection, "execute", execute)
        task = asyncio.create_task(unit_of_work())
        await sent.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        monkeypatch.undo()
        await asyncio.sleep(0.3)  # the server's answer, and asyncpg's cancel request, have arrived
        assert db.engine.pool.checkedout() == 0
        pooled = [await db.engine.raw_connection() for _ in range(db.engine.pool.checkedin())]
        try:
            pids = [fairy.driver_connection.get_server_pid() for fairy in pooled]
        finally:
            for fairy in pooled:
                fairy.close()
        assert [state for state in await _server_states(postgres_only_url, pids) if state != "idle"] == []
        for _ in range(3):
            async with db.transaction() as session:
                assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()


async def test_connections_over_the_pool_size_are_closed_when_handed_back(backend, postgres_only_url, caplog):
    """Past the pool's size, a driver connection handed back is closed, properly: asyncpg's close is awaited
    (closed outside SQLAlchemy's greenlet it logged MissingGreenlet and stayed open until garbage collected)."""
    db = Database(postgres_only_url)
    over = 5
    held = asyncio.Event()
    release = asyncio.Event()
    holding = 0

    async def hold() -> int:
        nonlocal holding
        async with driver_connection(db.engine) as connection:
            pid = connection.get_server_pid()
            holding += 1
            if holding == db.engine.pool.size() + over:
                held.set()
            await release.wait()
            return pid

    try:
        holders = [asyncio.create_task(hold()) for _ in range(db.engine.pool.size() + over)]
        await asyncio.wait_for(held.wait(), 30)
        assert db.engine.pool.overflow() == over
        release.set()
        pids = await asyncio.gather(*holders)
        assert len(await _server_states(postgres_only_url, pids)) == db.engine.pool.size()
        assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text
    finally:
        await db.dispose()
