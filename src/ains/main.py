"""Builds the FastAPI application: settings, database, routers, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from ains import __version__
from ains.agents.router import router as agents_router
from ains.audit.router import router as audit_router
from ains.auth.admin_key import resolve_admin_key
from ains.auth.keys import hash_key
from ains.auth.router import router as keys_router
from ains.background.runner import DutyRunner
from ains.core.cache import make_cache
from ains.core.config import Settings
from ains.core.context import AppContext
from ains.core.database import Database
from ains.core.errors import install_error_handlers
from ains.core.middleware import BodySizeLimit, RequestTelemetry
from ains.core.signals import TaskAvailability
from ains.migrate import upgrade
from ains.ops.router import router as ops_router
from ains.tasks.router import router as tasks_router
from ains.trust.router import router as trust_router
from ains.webhooks.router import router as webhooks_router

log = logging.getLogger("ains")


async def open_context(settings: Settings, *, with_admin_key: bool = True) -> AppContext:
    """Prepare the data directory and database (migrating if asked) and build the shared context."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.auto_migrate:
        await asyncio.to_thread(upgrade, settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    db.cache = make_cache(settings)
    return AppContext(
        settings=settings,
        db=db,
        admin_key_hash=hash_key(resolve_admin_key(settings)) if with_admin_key else "",
        signals=TaskAvailability(),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = await open_context(settings)
        app.state.ctx = ctx
        runner = DutyRunner(ctx) if settings.run_background else None
        if runner:
            runner.start()
        log.info(
            "AINS started",
            extra={"database": ctx.db.dialect, "version": __version__, "background": settings.run_background},
        )
        try:
            yield
        finally:
            if runner:
                await runner.stop()
            await ctx.cache.close()
            await ctx.db.dispose()

    app = FastAPI(
        title="AINS",
        version=__version__,
        description="Agent Intelligence Network System: a registry and task broker for AI agents.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # The trust router goes before the agents router: /ains/agents/leaderboard is not an agent id.
    for router in (ops_router, keys_router, trust_router, agents_router, tasks_router, webhooks_router, audit_router):
        app.include_router(router)
    # Batches carry up to 100 inputs; anything beyond that is refused before parsing.
    app.add_middleware(BodySizeLimit, limit=settings.max_input_bytes * 101 + 1024 * 1024)
    app.add_middleware(RequestTelemetry)
    return app
