"""Webhooks across real processes: an event survives SIGKILL before its delivery, and several
dispatchers on one PostgreSQL never send one event twice nor exceed the in-flight limit together."""

import asyncio
import signal
from collections import Counter

import httpx
import pytest

from tests.helpers import ADMIN, ServerProcess, WorkerProcess, bearer, task_body, wait_for
from tests.webhooks.receiver import Answer, Receiver


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


async def setup_client_hook(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    key = (await http.post("/ains/api-keys", json={"client_id": "client_1", "name": "t"}, headers=ADMIN)).json()
    owner = bearer(key["api_key"])
    created = await http.post(
        "/ains/clients/client_1/webhooks", json={"url": url, "events": ["task.created"]}, headers=owner
    )
    assert created.status_code == 201, created.text
    return owner


@pytest.mark.slow
async def test_an_event_survives_sigkill_before_delivery(settings, receiver):
    env = {
        "AINS_DATABASE_URL": settings.database_url,
        "AINS_DATA_DIR": str(settings.data_dir),
        "AINS_WEBHOOK_ALLOW_PRIVATE": "true",
    }
    # The first server delivers nothing (no background duties): the event waits in the outbox.
    first = ServerProcess(env | {"AINS_RUN_BACKGROUND": "false"})
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
            owner = await setup_client_hook(http, receiver.url)
            task = (await http.post("/ains/tasks", json=task_body(), headers=owner)).json()
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
    finally:
        first.stop()
    assert receiver.requests == []

    second = ServerProcess(env)
    try:
        assert await wait_for(lambda: _received(receiver), timeout=20)
        (request,) = receiver.requests
        assert request.payload["event"] == "task.created" and request.payload["task_id"] == task["task_id"]
    finally:
        second.stop()


async def _received(receiver):
    return len(receiver.requests) >= 1


@pytest.mark.slow
async def test_dispatchers_on_postgres_never_send_an_event_twice(postgres_only_url, tmp_path):
    slow_receiver = Receiver(default=Answer(200, delay=0.05))
    env = {
        "AINS_DATABASE_URL": postgres_only_url,
        "AINS_DATA_DIR": str(tmp_path),
        "AINS_WEBHOOK_ALLOW_PRIVATE": "true",
        "AINS_WEBHOOK_DISPATCH_INTERVAL_SECONDS": "0.05",
        "AINS_WEBHOOK_MAX_IN_FLIGHT": "4",
    }
    server = ServerProcess(env)
    workers = [WorkerProcess(env), WorkerProcess(env)]
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            owner = await setup_client_hook(http, slow_receiver.url)
            await asyncio.gather(*(http.post("/ains/tasks", json=task_body(), headers=owner) for _ in range(60)))
            assert await wait_for(lambda: _count_at_least(slow_receiver, 60), timeout=60)
            await asyncio.sleep(1)
        ids = Counter(r.payload["event_id"] for r in slow_receiver.requests)
        assert len(ids) == 60 and set(ids.values()) == {1}
        # Several at once, but never more than the limit, though three processes were sending.
        assert 2 <= slow_receiver.most_at_once <= 4
    finally:
        for process in (server, *workers):
            process.stop()
        slow_receiver.close()


async def _count_at_least(receiver, count):
    return len(receiver.requests) >= count
