"""The webhook directory (ains.webhooks.directory): who hears task events is known without a query while the
wake-up link is up, and every change of a webhook is heard at once, here and in the other server processes."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import bindparam, event, text

from ains.core.clock import utcnow
from ains.core.database import JSONType, UTCDateTime
from tests.helpers import ADMIN, ServerProcess, bearer, create_client, submit, task_body, wait_for

HOOK_URL = "http://127.0.0.1:9/hook"  # never called: nothing is dispatched in these tests


@pytest.fixture
def settings_overrides() -> dict:
    return {"webhook_allow_private": True, "run_background": False}


async def _deliveries(db, webhook_id: str) -> list[str]:
    async with db.read() as session:
        rows = await session.execute(
            text("SELECT task_id FROM webhook_deliveries WHERE webhook_id = :id ORDER BY id"), {"id": webhook_id}
        )
        return [task_id for (task_id,) in rows]


def _subscriber_queries(db) -> list[str]:
    seen: list[str] = []

    def note(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().startswith("SELECT webhook_id"):  # who hears an event, or the directory's load
            seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    return seen


async def test_events_are_routed_without_a_query_where_every_change_is_heard(backend, client, db):
    owner = await create_client(client, "client_1")
    created = await client.post(
        "/ains/clients/client_1/webhooks", json={"url": HOOK_URL, "events": ["task.created"]}, headers=owner
    )
    webhook_id = created.json()["webhook_id"]
    await submit(client, owner)  # loads the directory (PostgreSQL)
    queries = _subscriber_queries(db)
    tasks = [(await submit(client, owner))["task_id"] for _ in range(3)]
    assert (await _deliveries(db, webhook_id))[-3:] == tasks
    if backend.name == "postgres":
        assert queries == []  # the wake-up link is up: the directory answered
    else:
        assert len(queries) == 3  # SQLite has no link between processes: every submission asks


async def test_a_webhook_created_changed_or_deleted_is_heard_by_the_next_event(client, db):
    owner = await create_client(client, "client_1")
    await submit(client, owner)  # the directory is loaded while there is no webhook
    created = await client.post(
        "/ains/clients/client_1/webhooks", json={"url": HOOK_URL, "events": ["task.created"]}, headers=owner
    )
    webhook_id = created.json()["webhook_id"]
    heard = (await submit(client, owner))["task_id"]
    assert await _deliveries(db, webhook_id) == [heard]

    changed = await client.patch(f"/ains/webhooks/{webhook_id}", json={"events": ["task.completed"]}, headers=owner)
    assert changed.status_code == 200, changed.text
    await submit(client, owner)
    assert await _deliveries(db, webhook_id) == [heard]

    disabled = {"events": ["task.created"], "active": False}
    await client.patch(f"/ains/webhooks/{webhook_id}", json=disabled, headers=owner)
    await submit(client, owner)
    assert await _deliveries(db, webhook_id) == [heard]

    await client.patch(f"/ains/webhooks/{webhook_id}", json={"active": True}, headers=owner)
    again = (await submit(client, owner))["task_id"]
    assert await _deliveries(db, webhook_id) == [heard, again]

    assert (await client.delete(f"/ains/webhooks/{webhook_id}", headers=owner)).status_code == 204
    # A delivery for the deleted webhook would break the submission (its row is gone): it is answered.
    response = await client.post("/ains/tasks", json=task_body(), headers=owner)
    assert response.status_code == 201, response.text


async def test_a_webhook_created_through_one_server_is_heard_by_another(postgres_only_url, tmp_path):
    env = {
        "AINS_DATABASE_URL": postgres_only_url,
        "AINS_DATA_DIR": str(tmp_path / "data"),
        "AINS_WEBHOOK_ALLOW_PRIVATE": "true",
        "AINS_RUN_BACKGROUND": "false",
    }
    first = ServerProcess(env)
    second = ServerProcess(env)
    try:
        async with (
            httpx.AsyncClient(base_url=first.url, timeout=30) as one,
            httpx.AsyncClient(base_url=second.url, timeout=30) as other,
        ):
            key = (await one.post("/ains/api-keys", json={"client_id": "client_1", "name": "t"}, headers=ADMIN)).json()
            owner = bearer(key["api_key"])
            # The second server loads its directory while there is no webhook.
            assert (await other.post("/ains/tasks", json=task_body(), headers=owner)).status_code == 201
            created = await one.post(
                "/ains/clients/client_1/webhooks", json={"url": HOOK_URL, "events": ["task.created"]}, headers=owner
            )
            webhook_id = created.json()["webhook_id"]

            async def heard_through_the_second() -> bool:
                task = (await other.post("/ains/tasks", json=task_body(), headers=owner)).json()
                page = (await one.get(f"/ains/webhooks/{webhook_id}/deliveries", headers=owner)).json()
                return any(d["task_id"] == task["task_id"] for d in page["deliveries"])

            # The change reaches the second server through the wake-up link (milliseconds): its submissions are
            # heard from then on. Without the announcement none ever would be.
            assert await wait_for(heard_through_the_second, timeout=20)
            deleted = await one.delete(f"/ains/webhooks/{webhook_id}", headers=owner)
            assert deleted.status_code == 204

            async def submits_without_it() -> bool:
                return (await other.post("/ains/tasks", json=task_body(), headers=owner)).status_code == 201

            for _ in range(5):  # never a 500 for a delivery to the deleted webhook
                assert await submits_without_it()
    finally:
        first.stop()
        second.stop()


async def test_while_the_link_is_down_a_change_it_never_announced_is_still_honoured(client, db, app):
    """A webhook written by a process whose announcement never arrived (the link was down): events route by
    query until the link is back, and the directory is emptied when it comes back."""
    owner = await create_client(client, "client_1")
    await submit(client, owner)  # the directory is loaded while there is no webhook (PostgreSQL)
    signals = app.state.ctx.signals
    signals.connected = False
    async with db.transaction() as session:  # another process's webhook, announced to nobody
        await session.execute(
            text(
                "INSERT INTO webhooks (webhook_id, owner_kind, owner_id, url, events, secret, active,"
                " consecutive_failures, created_at, updated_at) VALUES ('wh_elsewhere', 'client', 'client_1',"
                " :url, :events, 'secret-secret-secret', true, 0, :now, :now)"
            ).bindparams(bindparam("now", type_=UTCDateTime), bindparam("events", type_=JSONType)),
            {"url": HOOK_URL, "events": ["task.created"], "now": utcnow()},
        )
    while_down = (await submit(client, owner))["task_id"]
    assert await _deliveries(db, "wh_elsewhere") == [while_down]
    signals.connected = True
    signals.missed_some()  # what the listener does on reconnecting
    after = (await submit(client, owner))["task_id"]
    assert await _deliveries(db, "wh_elsewhere") == [while_down, after]
