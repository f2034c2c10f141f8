"""The connection pool on PostgreSQL: connections the server ended are replaced, not handed to a request."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from ains.core.config import Settings
from ains.main import create_app
from tests.helpers import ADMIN, ADMIN_KEY


async def test_requests_after_the_server_ended_every_pooled_connection_succeed(postgres_only_url, tmp_path):
    settings = Settings(
        database_url=postgres_only_url, data_dir=tmp_path, admin_key=ADMIN_KEY, auto_migrate=False, run_background=False
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://ains.test") as http,
    ):
        # Fill the pool with several connections.
        body = {"name": "t"}
        answers = await asyncio.gather(
            *(http.post("/ains/api-keys", json=body | {"client_id": f"client_{n}"}, headers=ADMIN) for n in range(8))
        )
        assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
        parsed = make_url(postgres_url := postgres_only_url)
        admin = await asyncpg.connect(host=parsed.host, port=parsed.port, user=parsed.username, database="test")
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
                make_url(postgres_url).database,
            )
        finally:
            await admin.close()
        assert ended >= 2
        await asyncio.sleep(0.3)  # the event loop sees the connections close
        for n in range(20):
            answer = await http.post("/ains/api-keys", json={"client_id": f"later_{n}", "name": "t"}, headers=ADMIN)
            assert answer.status_code == 201, answer.text
