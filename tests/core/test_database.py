"""The connection pool on PostgreSQL: connections the server ended are replaced, not handed to a request."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from ains.core.config import Settings
from ains.main import create_app
from tests.helpers import ADMIN, ADMIN_KEY, create_client, task_body


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
        print("C", [a.status_code for a in answers], flush=True)
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


async def test_submissions_after_the_server_ended_every_pooled_connection_succeed(postgres_only_url, tmp_path):
    # A submission takes its pending-cap allowance on a driver connection of its own (ains.auth.quota).
    settings = Settings(
        database_url=postgres_only_url, data_dir=tmp_path, admin_key=ADMIN_KEY, auto_migrate=False, run_background=False
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ains.test") as http,
    ):
        headers = await create_client(http, "client_cut")
        answers = await asyncio.gather(*(http.post("/ains/tasks", json=task_body(), headers=headers) for _ in range(8)))
        assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
        await _end_every_connection(postgres_only_url)
        await asyncio.sleep(0.3)  # the event loop sees the connections close
        for _ in range(20):
            answer = await http.post("/ains/tasks", json=task_body(), headers=headers)
            assert answer.status_code == 201, answer.text


async def test_a_driver_connection_turns_driver_errors_into_sqlalchemy_errors(postgres_only_url):
    """By SQLSTATE class, as the session path's errors are: a refused value (22) a DataError (answered 422), a
    constraint (23) an IntegrityError (409), anything else an OperationalError (503)."""
    from sqlalchemy.exc import DataError, IntegrityError, OperationalError
    from sqlalchemy.ext.asyncio import create_async_engine

    from ains.core.database import driver_connection

    engine = create_async_engine(postgres_only_url, pool_size=1, max_overflow=0)
    try:
        with pytest.raises(DataError):
            async with driver_connection(engine) as connection:
                await connection.fetchval("SELECT 1 / 0")
        with pytest.raises(IntegrityError):
            async with driver_connection(engine) as connection:
                await connection.execute("CREATE TEMP TABLE one_row (n INTEGER PRIMARY KEY)")
                await connection.execute("INSERT INTO one_row VALUES (1), (1)")
        with pytest.raises(OperationalError):
            async with driver_connection(engine) as connection:
                await connection.execute("LOCK TABLE no_such_table")
        # The only pooled connection went back and still works.
        async with driver_connection(engine) as connection:
            assert await connection.fetchval("SELECT 41 + 1") == 42
        # One the server ended is thrown away, and the next checkout gets a new one.
        with pytest.raises((OperationalError, OSError)):
            async with driver_connection(engine) as connection:
                await connection.execute("SELECT pg_terminate_backend(pg_backend_pid())")
                await connection.fetchval("SELECT 1")
        async with driver_connection(engine) as connection:
            assert await connection.fetchval("SELECT 2") == 2
    finally:
        await engine.dispose()


async def test_a_connection_the_server_ended_replaces_every_older_one_in_the_pool(postgres_only_url):
    """A database restart ends every pooled connection at once: after the first driver connection finds its own
    ended, the pool makes new ones instead of handing out the others (as SQLAlchemy's own execution does)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from ains.core.database import driver_connection

    engine = create_async_engine(postgres_only_url, pool_size=3, max_overflow=0)
    try:

        async def hold() -> None:
            async with driver_connection(engine) as connection:
                await connection.fetchval("SELECT pg_sleep(0.1)")

        await asyncio.gather(hold(), hold(), hold())  # three connections in the pool
        await _end_every_connection(postgres_only_url)
        failures = 0
        for _ in range(3):
            try:
                async with driver_connection(engine) as connection:
                    assert await connection.fetchval("SELECT 1") == 1
            except Exception:
                failures += 1
        assert failures <= 1
    finally:
        await engine.dispose()


async def _end_every_connection(url: str) -> None:
    parsed = make_url(url)
    admin = await asyncpg.connect(host=parsed.host, port=parsed.port, user=parsed.username, database="test")
    try:
        await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1", parsed.database
        )
    finally:
        await admin.close()
