"""BulkInsert: many new rows in one statement (one JSON parameter on PostgreSQL), stored exactly as SQLAlchemy's
own executemany stores them, in their order, on both databases."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, insert, select, text

from ains.core.bulk import BulkInsert
from ains.core.clock import new_id
from ains.core.config import Settings
from ains.core.database import table_of
from ains.tasks import submission
from ains.tasks.models import Task
from ains.tasks.schemas import TaskSubmit
from ains.webhooks import outbox
from ains.webhooks.models import TaskEvent, Webhook, WebhookDelivery

EVENTS = table_of(TaskEvent)
TASKS = table_of(Task)


def _events(count: int, at: datetime) -> list[dict]:
    return [
        {"event_id": new_id("evt"), "event": "task.created", "task_id": f"task_{i}", "body": "{}", "created_at": at}
        for i in range(count)
    ]


async def test_rows_are_stored_as_written(db, backend):
    moment = datetime(2026, 11, 28, 5, 0, 1, 123456, tzinfo=UTC)
    bodies = ['{"a": "quote \\" and \\\\ backslash"}', "line\nbreak\ttab", "é😀 ünïcode", "", "'; DROP TABLE tasks; --"]
    times = [moment, moment.astimezone(timezone(timedelta(hours=2))), moment.replace(tzinfo=None), moment, moment]
    rows = [
        {"event_id": f"evt_{i}", "event": "task.created", "task_id": f"task_{i}", "body": body, "created_at": at}
        for i, (body, at) in enumerate(zip(bodies, times, strict=True))
    ]
    async with db.transaction() as session:
        if backend.name == "postgres":  # a naive time must not be read in the session's zone
            await session.execute(text("SET LOCAL TIME ZONE 'Asia/Tokyo'"))
        await BulkInsert(EVENTS).run(session, rows)
    async with db.read() as session:
        stored = (await session.execute(select(EVENTS).order_by(EVENTS.c.event_id))).all()
    assert [row.body for row in stored] == bodies
    # An aware time keeps its instant whatever its zone; a naive one is UTC (as UTCDateTime writes it).
    assert [row.created_at for row in stored] == [moment] * 5


async def test_new_tasks_are_stored_as_sqlalchemy_stores_them(db, backend):
    """The same rows through BulkInsert and through SQLAlchemy's executemany come back the same, column by column
    (on PostgreSQL a JSON column's None is JSON null in both, not SQL NULL)."""
    now = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
    settings = Settings()
    bodies = [
        {"task_type": "t", "capability_required": "data:v1", "input_data": {"n": 1, "s": "é", "l": [1.5, None]}},
        {"task_type": "t", "capability_required": "data:v1", "input_data": {}, "min_trust_score": 0.3},
        {"task_type": "t", "capability_required": "x:v2", "input_data": {"big": 2**70}, "metadata": {"k": "v"}},
    ]
    ours, theirs = [], []
    for body in bodies:
        for rows in (ours, theirs):
            task = submission._new_task("client_1", TaskSubmit.model_validate(body), now, settings)
            rows.append(submission._row(task))
    async with db.transaction() as session:
        await BulkInsert(TASKS).run(session, ours)
        await session.execute(insert(TASKS), theirs)
    json_columns = ["input_data", "metadata", "result_data", "depends_on"]
    as_text = ", ".join(f"CAST({c} AS TEXT) AS {c}_text" for c in json_columns) if backend.name == "postgres" else ""
    query = text(f"SELECT *{', ' + as_text if as_text else ''} FROM tasks WHERE task_id = :id")
    async with db.read() as session:
        for mine, other in zip(ours, theirs, strict=True):
            a = (await session.execute(query, {"id": mine["task_id"]})).mappings().one()
            b = (await session.execute(query, {"id": other["task_id"]})).mappings().one()
            assert {k: v for k, v in a.items() if k != "task_id"} == {k: v for k, v in b.items() if k != "task_id"}
            if backend.name == "postgres":
                assert a["depends_on_text"] == "null" and a["result_data_text"] == "null"


async def test_deliveries_keep_their_order_and_skip_inactive_webhooks(db):
    now = datetime.now(UTC)
    hooks = table_of(Webhook)
    common = {"owner_kind": "client", "owner_id": "client_1", "url": "http://127.0.0.1:9/", "events": ["task.created"]}
    common |= {"secret": "s", "consecutive_failures": 0, "created_at": now, "updated_at": now}
    events = _events(40, now)
    rows = [
        outbox.delivery_row(random.choice(["wh_on", "wh_off"]), e["event_id"], e["task_id"], now) | {"delivery_id": d}
        for e, d in zip(events, random.sample([f"dlv_{i:03}" for i in range(40)], 40), strict=True)
    ]
    async with db.transaction() as session:
        await session.execute(
            insert(hooks),
            [common | {"webhook_id": "wh_on", "active": True}, common | {"webhook_id": "wh_off", "active": False}],
        )
        await BulkInsert(EVENTS).run(session, events)
        await outbox._INSERT_DELIVERIES.run(session, rows)
    deliveries = table_of(WebhookDelivery)
    async with db.read() as session:
        stored = (await session.execute(select(deliveries.c.delivery_id).order_by(deliveries.c.id))).scalars().all()
    assert stored == [row["delivery_id"] for row in rows if row["webhook_id"] == "wh_on"]
    assert stored  # (40 random picks: both webhooks have some, but an empty list would prove nothing)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite takes SQLAlchemy's executemany
async def test_one_statement_whatever_the_number_of_rows_on_postgres(db):
    seen: list[tuple[str, bool]] = []

    def note(_conn, _cursor, statement, _parameters, _context, executemany):
        if statement.lstrip().upper().startswith("INSERT"):
            seen.append((statement, executemany))

    event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    try:
        for count in (3, 17, 100):
            async with db.transaction() as session:
                await BulkInsert(EVENTS).run(session, _events(count, datetime.now(UTC)))
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", note)
    # One statement per batch, not an executemany, and the same text for every size: prepared once.
    assert len(seen) == 3 and not any(many for _, many in seen)
    assert len({statement for statement, _ in seen}) == 1
    async with db.read() as session:
        assert await session.scalar(select(text("count(*)")).select_from(EVENTS)) == 120
