"""Alembic environment: runs migrations on the async engine; on PostgreSQL under an advisory lock
so servers starting together don't migrate twice."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import ains.agents.models
import ains.audit.models
import ains.auth.models
import ains.tasks.models
import ains.trust.models
import ains.webhooks.models  # noqa: F401  (registers the tables)
from ains.core.database import Base

target_metadata = Base.metadata
MIGRATION_LOCK = 7_102_202_611


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text(f"SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            await connection.commit()
        else:
            # Before the server opens its pool: see _sqlite_engine in ains/core/database.py.
            await connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            await connection.commit()
        try:
            await connection.run_sync(_run)
        finally:
            if connection.dialect.name == "postgresql":
                await connection.execute(text(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                await connection.commit()
    await engine.dispose()


url = context.config.attributes.get("database_url") or context.config.get_main_option("sqlalchemy.url")
if not url:
    raise SystemExit("no database URL: pass one to ains.migrate.upgrade or set sqlalchemy.url")
asyncio.run(_run_async(str(url)))
