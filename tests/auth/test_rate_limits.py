"""SPEC 18: a token bucket per key. 429 with Retry-After and RateLimit-* beyond it, per-key sizes, /health
and /ready never limited, and with Redis one bucket shared by every server process."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ains.auth.ratelimit import LocalBuckets
from tests.helpers import ADMIN, ServerProcess, bearer, create_client, register_agent, task_body


async def _limited_key(client, per_second: float, burst: int, **extra) -> dict[str, str]:
    return await create_client(client, rate_limit_per_second=per_second, rate_limit_burst=burst, **extra)


async def test_over_the_bucket_is_429_with_the_headers(client):
    # 0.001 tokens a second: nothing refills while the test runs.
    headers = await _limited_key(client, 0.001, 3)
    remaining = []
    for _ in range(3):
        response = await client.get("/ains/tasks", headers=headers)
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "3"
        remaining.append(int(response.headers["RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    refused = await client.post("/ains/tasks", json=task_body(), headers=headers)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/json"
    assert "detail" in refused.json() and "Rate limit" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Limit"] == "3" and refused.headers["RateLimit-Remaining"] == "0"
    assert int(refused.headers["RateLimit-Reset"]) >= int(refused.headers["Retry-After"])
    # Keys have buckets of their own.
    other = await create_client(client, "client_2")
    assert (await client.get("/ains/tasks", headers=other)).status_code == 200
    assert (await client.get("/ains/tasks", headers=other)).headers["RateLimit-Limit"] == "2000"  # the default


async def test_health_and_ready_are_never_limited(client):
    headers = await _limited_key(client, 0.001, 1)
    assert (await client.get("/ains/tasks", headers=headers)).status_code == 200
    assert (await client.get("/ains/tasks", headers=headers)).status_code == 429
    for _ in range(5):
        assert (await client.get("/health", headers=headers)).status_code == 200
        assert (await client.get("/ready", headers=headers)).status_code == 200


async def test_agent_keys_have_buckets_too(client):
    agent = await register_agent(client)
    response = await client.post("/ains/agents/agent_1/heartbeat", json={}, headers=agent.headers)
    assert response.status_code == 200 and response.headers["RateLimit-Limit"] == "2000"


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_per_second": 0.001, "rate_limit_burst": 2}])
async def test_the_server_defaults_are_settings(client):
    headers = await create_client(client)  # the admin's own requests spend the admin bucket, not this one
    assert [(await client.get("/ains/tasks", headers=headers)).status_code for _ in range(3)] == [200, 200, 429]


def test_a_bucket_refills_at_its_rate():
    now = [100.0]
    buckets = LocalBuckets(clock=lambda: now[0])  # time passes only when the test says so
    assert [buckets.take("k", 1000.0, 2).allowed for _ in range(3)] == [True, True, False]
    refused = buckets.take("k", 1000.0, 2)
    assert refused.retry_after_seconds == 1  # at least a second: Retry-After counts whole seconds
    now[0] += 0.001  # one token's worth at 1,000 a second
    assert [buckets.take("k", 1000.0, 2).allowed for _ in range(2)] == [True, False]


async def test_with_redis_the_bucket_lives_in_redis(backend, tmp_path, redis_settings_overrides):
    from ains.core.config import Settings
    from ains.main import create_app
    from tests.helpers import ADMIN_KEY

    settings = Settings(
        database_url=backend.url,
        data_dir=tmp_path,
        admin_key=ADMIN_KEY,
        auto_migrate=False,
        **redis_settings_overrides,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert app.state.ctx.limiter.shared
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ains.test") as client:
            headers = await _limited_key(client, 0.001, 4, client_id=f"client_{backend.name}")
            codes = [(await client.get("/ains/tasks", headers=headers)).status_code for _ in range(6)]
            assert codes == [200] * 4 + [429] * 2


@pytest.mark.slow
async def test_two_servers_share_one_bucket_through_redis(postgres_only_url, tmp_path, redis_settings_overrides):
    env = {
        "AINS_DATABASE_URL": postgres_only_url,
        "AINS_DATA_DIR": str(tmp_path),
        "AINS_REDIS_URL": redis_settings_overrides["redis_url"],
        "AINS_REDIS_PREFIX": redis_settings_overrides["redis_prefix"],
        "AINS_RUN_BACKGROUND": "false",
        # A loaded test machine can keep Redis waiting past the default 250 ms, and a request that gives up on
        # Redis is checked against its own process's bucket: that is the fallback, not the sharing under test.
        "AINS_REDIS_TIMEOUT_SECONDS": "10",
    }
    servers = [ServerProcess(env), ServerProcess(env)]
    try:
        clients = [httpx.AsyncClient(base_url=server.url, timeout=30) for server in servers]
        created = await clients[0].post(
            "/ains/api-keys",
            json={"client_id": "client_1", "name": "t", "rate_limit_per_second": 0.001, "rate_limit_burst": 40},
            headers=ADMIN,
        )
        headers = bearer(created.json()["api_key"])
        answers = await asyncio.gather(*(clients[n % 2].get("/ains/tasks", headers=headers) for n in range(120)))
        allowed = [answer for answer in answers if answer.status_code == 200]
        refused = [answer for answer in answers if answer.status_code == 429]
        assert len(allowed) + len(refused) == 120
        # One bucket of 40 for both processes (each with a bucket of its own, 80 would pass).
        assert len(allowed) == 40, [answer.status_code for answer in answers]
        # Both processes answered, and each refused what its own bucket alone would have let through.
        for server in servers:
            mine = [answer for answer in answers if answer.request.url.port == server.port]
            assert len(mine) == 60 and any(answer.status_code == 429 for answer in mine)
        for client in clients:
            await client.aclose()
    finally:
        for server in servers:
            server.stop()


async def test_the_sdk_waits_out_a_429_and_sends_again(app, client):
    from ains.client import AsyncAINSClient

    created = await client.post(
        "/ains/api-keys",
        json={"client_id": "client_1", "name": "t", "rate_limit_per_second": 1, "rate_limit_burst": 1},
        headers=ADMIN,
    )
    statuses: list[int] = []

    async def record(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    transport = httpx.ASGITransport(app=app)
    async with AsyncAINSClient("http://ains.test", created.json()["api_key"], transport=transport) as sdk:
        sdk._http.event_hooks["response"].append(record)
        first = await sdk.submit_task(**task_body())  # not idempotent: a 429 is still safe to send again
        second = await sdk.submit_task(**task_body())
    assert first.task_id != second.task_id
    assert statuses == [201, 429, 201]
