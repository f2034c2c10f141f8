"""A dispatcher pass that finds a webhook with due deliveries locked by another transaction comes back soon.

Found under load: a delivery recorded while the dispatcher's recorder held its webhook's
row was skipped by the pass its event woke, and then waited out the whole dispatch
interval. Row locks are PostgreSQL's, so this runs there.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select

from ains.core.clock import utcnow
from ains.core.config import Settings
from ains.main import create_app
from ains.webhooks.dispatcher import WebhookDispatcher
from ains.webhooks.models import Webhook
from tests.helpers import ADMIN_KEY, create_client, submit, wait_for
from tests.webhooks.test_delivery import hook


async def test_a_pass_that_finds_its_webhook_locked_looks_again_soon(postgres_only_url, tmp_path, receivers):
    settings = Settings(
        database_url=postgres_only_url,
        data_dir=tmp_path / "data",
        admin_key=ADMIN_KEY,
        auto_migrate=False,
        run_background=False,  # only the dispatcher below sends
        webhook_allow_private=True,
        webhook_dispatch_interval_seconds=60,
    )
    application = create_app(settings)
    receiver = receivers()
    async with application.router.lifespan_context(application):
        ctx = application.state.ctx
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://ains.test") as client:
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
