"""For the tests about the dispatcher's row locks (PostgreSQL's): an app with no background duties, and a probe
for a transaction waiting on a lock."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from ains.core.config import Settings
from ains.core.context import AppContext
from ains.main import create_app
from tests.helpers import ADMIN_KEY


@contextlib.asynccontextmanager
async def app_on_postgres(
    url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[AppContext, httpx.AsyncClient]]:
    """The app on `url` with no background duties (only what the test runs touches the deliveries), its context
    and a client for its API."""
    settings = Settings(
        database_url=url,
        data_dir=tmp_path / "data",
        admin_key=ADMIN_KEY,
        auto_migrate=False,
        run_background=False,
        webhook_allow_private=True,
        **overrides,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://ains.test") as client:
            yield application.state.ctx, client


async def waiting_for_a_lock(url: str) -> str | None:
    """The query of a transaction of this database waiting for a lock, if one is."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        query: str | None = await connection.fetchval(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' LIMIT 1"
        )
    finally:
        await connection.close()
    return query
