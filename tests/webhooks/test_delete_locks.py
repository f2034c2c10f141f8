"""Deleting a webhook while a dispatcher records one of its attempts: they queue, they don't deadlock.

A recording locks the deliveries it writes, then their webhook; a delete used to lock the webhook, then its
deliveries (the cascade). Caught between the two, PostgreSQL found a deadlock and aborted one of them. Row locks
are PostgreSQL's, so this runs there.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
from sqlalchemy import select

from ains.core.config import Settings
from ains.main import create_app
from ains.webhooks.models import Webhook, WebhookDelivery
from tests.helpers import ADMIN_KEY, create_client, submit
from tests.webhooks.test_delivery import hook


async def _someone_waits_for_a_lock(url: str) -> bool:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    finally:
        await connection.close()
    return waiting > 0


async def test_a_delete_during_a_recording_waits_for_it_and_both_succeed(postgres_only_url, tmp_path):
    settings = Settings(
        database_url=postgres_only_url,
        data_dir=tmp_path / "data",
        admin_key=ADMIN_KEY,
        auto_migrate=False,
        run_background=False,  # nothing else records
        webhook_allow_private=True,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        ctx = application.state.ctx
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://ains.test") as client:
            owner = await create_client(client, "client_1")
            created = await hook(
                client, owner, "/ains/clients/client_1", "http://127.0.0.1:9/h", events=["task.created"]
            )
            webhook_id = created["webhook_id"]
            await submit(client, owner)

            async with ctx.db.transaction() as recording:  # as the dispatcher records: deliveries first
                await recording.execute(
                    select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == webhook_id).with_for_update()
                )
                deleting = asyncio.create_task(client.delete(f"/ains/webhooks/{webhook_id}", headers=owner))
                while not await _someone_waits_for_a_lock(postgres_only_url):
                    assert not deleting.done(), (await deleting).text
                    await asyncio.sleep(0.02)
                # ... then the webhook, which the delete must not be holding while it waits.
                await recording.execute(
                    select(Webhook.webhook_id).where(Webhook.webhook_id == webhook_id).with_for_update()
                )
            response = await deleting
            assert response.status_code == 204, response.text
            listed = await client.get("/ains/clients/client_1/webhooks", headers=owner)
            assert listed.json()["webhooks"] == []
