"""Builds the FastAPI application: settings, database, routers, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator

from fastapi import FastAPI

from ains import __version__
from ains.agents.duties import STALE_AGENTS
from ains.agents.router import router as agents_router
from ains.audit.router import router as audit_router
from ains.auth.admin_key import prepare_data_dir, resolve_admin_key
from ains.auth.dependencies import document_access
from ains.auth.key_cache import KeyCache
from ains.auth.keys import hash_key
from ains.auth.ratelimit import RateLimiter
from ains.auth.router import router as keys_router
from ains.auth.router import tokens_router as registration_tokens_router
from ains.background.duty import Duty
from ains.background.runner import DutyRunner
from ains.console.router import install as install_console
from ains.core.cache import MemoryCache, make_cache
from ains.core.config import Settings
from ains.core.context import AppContext
from ains.core.database import Database
from ains.core.errors import install_error_handlers
from ains.core.listener import WakeupListener
from ains.core.long_poll import stop_long_polls_on_signals
from ains.core.metrics import MULTIPROCESS_VARIABLE
from ains.core.middleware import BodySizeLimit, RequestTelemetry
from ains.core.signals import CACHE, KEY, WEBHOOKS, Wakeups
from ains.migrate import upgrade
from ains.ops.api_docs import install_api_docs
from ains.ops.router import router as ops_router
from ains.schedules.duty import SCHEDULES
from ains.schedules.router import router as schedules_router
from ains.tasks.duties import EXPIRED_LEASES, RETRY_WAKEUPS, TIMEOUTS
from ains.tasks.router import router as tasks_router
from ains.trust.router import router as trust_router
from ains.webhooks.directory import directory_for
from ains.webhooks.dispatcher import webhook_duty
from ains.webhooks.router import router as webhooks_router
from ains.workflows.router import router as workflows_router

log = logging.getLogger("ains")


async def open_context(settings: Settings, *, with_admin_key: bool = True) -> AppContext:
    """Prepare the data directory and database (migrating if asked) and build the shared context."""
    prepare_data_dir(settings)  # 0700, its SQLite files 0600 (SPEC 18)
    if settings.auto_migrate:
        await asyncio.to_thread(upgrade, settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    db.cache = cache = make_cache(settings)
    db.wakeups = wakeups = Wakeups()
    wakeups.deadline_horizon_seconds = max(settings.timeout_check_seconds, settings.webhook_dispatch_interval_seconds)
    keys = KeyCache()
    wakeups.watch(KEY, keys.forget)
    wakeups.watch(WEBHOOKS, directory_for(db.engine).forget)
    if isinstance(cache, MemoryCache):
        wakeups.watch(CACHE, cache.drop)
    listener = None
    if not db.is_sqlite:
        # Other processes may share this database: hear their changes, and stop trusting the in-process
        # caches whenever that link is down.
        listener = WakeupListener(db.url, wakeups, check_seconds=settings.wakeup_fallback_seconds)
        db.origin = listener.origin
        if isinstance(cache, MemoryCache):
            cache.usable = lambda: wakeups.connected
        listener.start()
    return AppContext(
        settings=settings,
        db=db,
        admin_key_hash=hash_key(resolve_admin_key(settings)) if with_admin_key else "",
        signals=wakeups,
        keys=keys,
        listener=listener,
        limiter=RateLimiter(settings),  # per-key token buckets (SPEC 18), in Redis when configured
    )


def background_duties() -> list[Duty]:
    """Every background duty, for `ains serve` (unless AINS_RUN_BACKGROUND=false) and `ains worker`."""
    return [TIMEOUTS, EXPIRED_LEASES, STALE_AGENTS, RETRY_WAKEUPS, webhook_duty(), SCHEDULES]


def create_app(settings: Settings | None = None, *, supervisor_pid: int | None = None) -> FastAPI:
    """The app. `supervisor_pid`: the `ains serve --workers N` this is a server process of (it stops when that is
    gone)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = await open_context(settings)
        app.state.ctx = ctx
        # A stop signal ends waiting claims and heartbeats at once, so they do not hold the stop up.
        restore_signals = stop_long_polls_on_signals(ctx.signals.stop)
        runner = DutyRunner(ctx, background_duties()) if settings.run_background else None
        if runner:
            runner.start()
        orphaned = asyncio.create_task(_stop_when_orphaned(supervisor_pid)) if supervisor_pid else None
        log.info(
            "AINS started",
            extra={"database": ctx.db.dialect, "version": __version__, "background": settings.run_background},
        )
        try:
            yield
        finally:
            if orphaned is not None:
                orphaned.cancel()
            restore_signals()
            ctx.signals.stop()
            if runner:
                await runner.stop()
            await ctx.close()

    app = FastAPI(
        title="AINS",
        version=__version__,
        description="Agent Intelligence Network System: a registry and task broker for AI agents.",
        lifespan=lifespan,
        docs_url=None,  # served by install_api_docs from the package's own assets
        redoc_url=None,
    )
    install_error_handlers(app)
    # Routes are matched in order, every request, at about a microsecond per route tried: the tasks router (the
    # hot paths) goes first, then the agents router, whose first route is the heartbeat; none of their routes
    # matches another router's path (tests/ops/test_routing.py). The trust router goes before the agents router:
    # /ains/agents/leaderboard is not an agent id.
    for router in (tasks_router, trust_router, agents_router, ops_router, keys_router, webhooks_router, audit_router):
        app.include_router(router)
    app.include_router(registration_tokens_router)
    app.include_router(workflows_router)  # SPEC 17
    app.include_router(schedules_router)
    document_access(app)  # each route's declared access (scope, admin, agent, public) in /openapi.json
    install_api_docs(app)  # /docs and /redoc, working offline
    install_console(app)  # /console: the operator console (SPEC 19), not part of the JSON API
    # The edge of every route: body size counted as it arrives, refused text and numbers (SPEC 13).
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes, max_metadata_bytes=settings.max_metadata_bytes)
    app.add_middleware(RequestTelemetry)
    return app


def prepare_workers(settings: Settings) -> None:
    """Before `ains serve --workers N` starts its processes: migrate and settle the admin key once."""
    prepare_data_dir(settings)  # 0700, its SQLite files 0600 (SPEC 18)
    if settings.auto_migrate:
        upgrade(settings.resolved_database_url)
    resolve_admin_key(settings)
    # The workers inherit the environment: the database is migrated, so they need not each try; and they learn
    # whose server processes they are (a worker that asked its parent only once started could be an orphan by then).
    os.environ["AINS_AUTO_MIGRATE"] = "false"
    os.environ[SUPERVISOR_PID_VARIABLE] = str(os.getpid())


@contextlib.contextmanager
def shared_counters(directory: str | None = None) -> Iterator[None]:
    """While `ains serve --workers N` runs: the directory its server processes count in, so a scrape of any one of
    them reports them all (ains.core.metrics). The server processes inherit it, and read it as they start; this
    process, which imported the metrics already, counts nothing there. `directory`: the operator's, used as it is and
    kept; otherwise a fresh one, removed when `ains serve` ends."""
    created = directory is None
    if directory is None:
        directory = tempfile.mkdtemp(prefix="ains-metrics-")
    os.environ[MULTIPROCESS_VARIABLE] = directory
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_VARIABLE, None)
        if created:
            shutil.rmtree(directory, ignore_errors=True)


# The pid of the `ains serve --workers N` whose server process this is; internal, so not an AINS_ setting.
SUPERVISOR_PID_VARIABLE = "_AINS_SUPERVISOR_PID"

# How often a server process of `ains serve --workers N` looks whether the `ains serve` that started it is there.
SUPERVISOR_CHECK_SECONDS = 1.0


async def _stop_when_orphaned(supervisor_pid: int) -> None:
    """Stop this server process, as SIGTERM does, once its `ains serve` is gone. uvicorn's server processes outlive
    a supervisor killed outright (SIGKILL, the OOM killer), still holding the port and running their duties, and a
    new `ains serve` could not take the port."""
    while os.getppid() == supervisor_pid:
        await asyncio.sleep(SUPERVISOR_CHECK_SECONDS)
    log.warning("the ains serve that started this server process is gone; stopping", extra={"pid": supervisor_pid})
    os.kill(os.getpid(), signal.SIGTERM)
