"""The dispatcher's row locks on webhooks, against the rest of the work (row locks are PostgreSQL's: runs there).

A pass that finds a webhook with due deliveries locked by another transaction comes
back soon. Found under load: a delivery recorded while the dispatcher's recorder held
its webhook's row was skipped by the pass its event woke, and then waited out the whole
dispatch interval.

A task event for a webhook the dispatcher holds is written at once: the dispatcher
locks webhooks FOR NO KEY UPDATE, which the foreign key check of a new delivery
(FOR KEY SHARE) does not wait for. With FOR UPDATE, every completion of a busy
webhook's tasks queued behind the dispatcher's recordings.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from ains.core.clock import utcnow
from ains.webhooks import statements
from ains.webhooks.dispatcher import WebhookDispatcher
from ains.webhooks.models import Webhook
from tests.helpers import create_client, submit, wait_for
from tests.webhooks.on_postgres import app_on_postgres, waiting_for_a_lock
from tests.webhooks.test_delivery import hook


async def test_a_pass_that_finds_its_webhook_locked_looks_again_soon(postgres_only_url, tmp_path, receivers):
    receiver = receivers()
    # Only the dispatcher below sends.
    async with app_on_postgres(postgres_only_url, tmp_path, webhook_dispatch_interval_seconds=60) as (ctx, client):
        owner = await create_client(client, "client_1")
        await hook(client, owner, "/ains/clients/client_1", receiver.url, events=["task.created"])
        task = await submit(client, owner)
        dispatcher = WebhookDispatcher()
        try:
            async with ctx.db.transaction() as holder:  # as a recording of the webhook's last attempt would
                await holder.execute(select(Webhook.webhook_id).with_for_update())
                blocked = await dispatcher.run_pass(ctx)
            assert blocked.handled == 0
            assert blocked.next_due is not None and blocked.next_due - utcnow() < timedelta(seconds=1)

            free = await dispatcher.run_pass(ctx)
            assert free.handled == 1
            assert await wait_for(lambda: _arrived(receiver, task["task_id"]), timeout=10)
        finally:
            await dispatcher.close()


async def _arrived(receiver, task_id: str) -> bool:
    return any(r.payload["task_id"] == task_id for r in receiver.requests)


@pytest.mark.parametrize("lock", ["LOCK_HEALTH", "LOCK_WEBHOOKS"])
async def test_a_task_event_does_not_wait_for_the_dispatcher_holding_its_webhook(
    lock, postgres_only_url, tmp_path, receivers
):
    async with app_on_postgres(postgres_only_url, tmp_path) as (ctx, client):
        owner = await create_client(client, "client_1")
        created = await hook(client, owner, "/ains/clients/client_1", receivers().url, events=["task.created"])
        async with ctx.db.transaction() as holder:  # as the dispatcher's recording (or pass) of this webhook
            held = await holder.execute(getattr(statements, lock), {"ids": [created["webhook_id"]]})
            assert len(held.all()) == 1
            submission = asyncio.create_task(submit(client, owner))
            waited = await _lock_wait_or_done(postgres_only_url, submission)
            assert waited is None, f"the task event waited for the dispatcher's lock: {waited}"
            task = submission.result()
        async with ctx.db.read() as session:
            deliveries = await session.scalar(
                text("SELECT count(*) FROM webhook_deliveries WHERE task_id = :t"), {"t": task["task_id"]}
            )
        assert deliveries == 1


async def _lock_wait_or_done(url: str, submission: asyncio.Task) -> str | None:
    """Until `submission` is done: None; or the query of a backend found waiting for a lock, as soon as one is."""
    while not submission.done():
        waiting = await waiting_for_a_lock(url)
        if waiting is not None:
            submission.cancel()
            return waiting
        await asyncio.sleep(0.02)
    return None
