"""Deleting a webhook while a dispatcher records one of its attempts: they queue, they don't deadlock.

A recording locks the deliveries it writes, then their webhook; a delete used to lock the webhook, then its
deliveries (the cascade). Caught between the two, PostgreSQL found a deadlock and aborted one of them. Row locks
are PostgreSQL's, so this runs there.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from ains.webhooks.models import Webhook, WebhookDelivery
from tests.helpers import create_client, submit
from tests.webhooks.on_postgres import app_on_postgres, waiting_for_a_lock
from tests.webhooks.test_delivery import hook


async def test_a_delete_during_a_recording_waits_for_it_and_both_succeed(postgres_only_url, tmp_path):
    async with app_on_postgres(postgres_only_url, tmp_path) as (ctx, client):
        owner = await create_client(client, "client_1")
        created = await hook(client, owner, "/ains/clients/client_1", "http://127.0.0.1:9/h", events=["task.created"])
        webhook_id = created["webhook_id"]
        await submit(client, owner)

        async with ctx.db.transaction() as recording:  # as the dispatcher records: deliveries first
            await recording.execute(
                select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == webhook_id).with_for_update()
            )
            deleting = asyncio.create_task(client.delete(f"/ains/webhooks/{webhook_id}", headers=owner))
            while not await waiting_for_a_lock(postgres_only_url):
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
