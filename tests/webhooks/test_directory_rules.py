"""The webhook directory's rules, on a throwaway SQLite database: who it says hears an event, when it must leave
the answer to the database, and that a change (or a gap in the link between processes) empties it."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from ains.core.signals import WEBHOOKS, Wakeups
from ains.webhooks.directory import WebhookDirectory
from ains.webhooks.models import Webhook

HOOKS = [
    ("wh_client", "client", "client_1", '["task.completed"]'),
    ("wh_other_client", "client", "client_2", '["task.completed"]'),
    ("wh_agent", "agent", "agent_1", '["task.assigned"]'),
    ("wh_submitting_agent", "agent", "agent_2", '["task.completed"]'),
]


@pytest.fixture
async def session():
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as connection:
        await connection.run_sync(Webhook.__table__.create)
        for webhook_id, kind, owner, events in HOOKS:
            await connection.execute(
                text(
                    "INSERT INTO webhooks (webhook_id, owner_kind, owner_id, url, events, secret, active,"
                    " consecutive_failures, created_at, updated_at) VALUES (:id, :kind, :owner, 'http://x', :events,"
                    " 's', 1, 0, '2026-11-28 00:00:00.000000', '2026-11-28 00:00:00.000000')"
                ),
                {"id": webhook_id, "kind": kind, "owner": owner, "events": events},
            )
    async with AsyncSession(engine) as open_session:
        yield open_session
    await engine.dispose()


async def test_an_audience_is_its_clients_and_its_agents_webhooks(session):
    directory = WebhookDirectory()
    assert directory.hearing("client_1", None, created=False) is None  # not loaded: the database says
    await directory.load(session)
    assert directory.hearing("client_1", "agent_1", created=False) == [
        ("wh_client", ["task.completed"]),
        ("wh_agent", ["task.assigned"]),
    ]
    # An agent that submitted the task is its client: its webhooks hear it too.
    assert directory.hearing("agent_2", None, created=False) == [("wh_submitting_agent", ["task.completed"])]
    assert directory.hearing("client_3", None, created=True) == []


async def test_task_created_is_left_to_the_database_once_an_agent_hears_it(session):
    directory = WebhookDirectory()
    await directory.load(session)
    assert directory.hearing("client_1", None, created=True) == [("wh_client", ["task.completed"])]
    await session.execute(text("""UPDATE webhooks SET events = '["task.created"]' WHERE webhook_id = 'wh_agent'"""))
    directory.forget()
    await directory.load(session)
    assert directory.hearing("client_1", None, created=True) is None  # who may claim it depends on trust
    assert directory.hearing("client_1", None, created=False) is not None


async def test_a_change_or_a_gap_in_the_link_empties_it(session):
    directory, wakeups = WebhookDirectory(), Wakeups()
    wakeups.watch(WEBHOOKS, directory.forget)
    await directory.load(session)
    wakeups.deliver([(WEBHOOKS, "", "")])
    assert directory.hearing("client_1", None, created=False) is None
    await directory.load(session)
    wakeups.missed_some()
    assert directory.hearing("client_1", None, created=False) is None


async def test_a_load_that_began_before_a_change_stores_nothing(session):
    directory = WebhookDirectory()
    loading = asyncio.create_task(directory.load(session))
    await asyncio.sleep(0)  # the load has read the generation and waits for its rows
    directory.forget()
    await loading
    assert directory.hearing("client_1", None, created=False) is None and directory.worth_loading
