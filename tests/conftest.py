"""Fixtures: every database test runs on SQLite and on PostgreSQL, each run in its own database.

PostgreSQL is looked for at AINS_TEST_POSTGRES_URL (default: the local server,
database `test`); the run creates `ains_test_<random>` there and drops it at the
end. Without PostgreSQL those tests skip with the reason shown; with
AINS_TEST_REQUIRE_SERVICES=1 (set by CI) they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from ains.core import clock as clock_module
from ains.core.config import Settings
from ains.core.database import Base, Database
from ains.main import create_app
from ains.migrate import upgrade
from tests.helpers import ADMIN_KEY, wait_for

# Each test's reports by phase ("setup", "call", "teardown"), for fixtures that add evidence when the test failed.
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


def failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test using this fixture failed (for a fixture's teardown)."""
    call = request.node.stash.get(REPORTS, {}).get("call")
    return call is not None and call.failed


POSTGRES_URL = os.environ.get("AINS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("AINS_TEST_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (AINS_TEST_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


_postgres_error: list[str] = []


@dataclass
class Backend:
    name: str
    url: str


async def _admin_execute(url: str, *statements: str) -> None:
    import asyncpg

    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
        timeout=5,
    )
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    name = f"ains_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin_execute(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server, no rights: the reason is shown on the skipped tests
        _postgres_error.append(f"PostgreSQL unavailable at {POSTGRES_URL}: {type(exc).__name__}: {exc}")
        yield None
        return
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    asyncio.run(_admin_execute(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("sqlite") / "ains.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    # A file of its own per test: nothing an earlier test left running (a lock, a connection) can reach it.
    path = tmp_path / "ains.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        if url is None:
            unavailable(_postgres_error[0] if _postgres_error else f"PostgreSQL unavailable at {POSTGRES_URL}")
        return Backend("postgres", url)
    return Backend("sqlite", request.getfixturevalue("sqlite_url"))


async def _clean(url: str) -> None:
    db = Database(url)
    try:
        async with db.transaction() as session:
            tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
            if db.is_sqlite:
                for table in tables:
                    await session.execute(text(f"DELETE FROM {table}"))
            else:
                await session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    finally:
        await db.dispose()


@pytest.fixture
def settings_overrides() -> dict:
    """Override in a test module to shrink intervals."""
    return {}


@pytest.fixture
async def settings(backend: Backend, tmp_path: Path, settings_overrides: dict) -> Settings:
    if backend.name == "postgres":
        await _clean(backend.url)
    return Settings(
        database_url=backend.url,
        data_dir=tmp_path / "data",
        admin_key=ADMIN_KEY,
        auto_migrate=False,
        **settings_overrides,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        ctx = application.state.ctx
        if ctx.listener is not None:
            # On PostgreSQL the link to the other processes' wake-ups connects in the background; until it is up the
            # in-process caches are not trusted, and when it comes up they start afresh. Tests begin where a running
            # server is, with the link up (a loaded machine took long enough that a test saw the switch).
            async def link_up() -> bool:
                return ctx.signals.connected

            assert await wait_for(link_up), "the wake-up link to PostgreSQL did not come up"
        yield application


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ains.test") as http:
        yield http


@pytest.fixture
async def served_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A real `ains serve` process on this test's database (SQLite or PostgreSQL), and a client to it: for
    tests whose attack must go over real HTTP. A module uses it as `client` by overriding that fixture."""
    from tests.helpers import ServerProcess

    server = ServerProcess({"AINS_DATABASE_URL": settings.database_url, "AINS_DATA_DIR": str(settings.data_dir)})
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            yield http
    finally:
        server.stop()


@pytest.fixture
def db(app) -> Database:
    return app.state.ctx.db


@pytest.fixture
async def postgres_only_url(postgres_url: str | None) -> str:
    """A clean PostgreSQL database, for tests about row locks across processes."""
    if postgres_url is None:
        unavailable(_postgres_error[0] if _postgres_error else f"PostgreSQL unavailable at {POSTGRES_URL}")
    await _clean(postgres_url)
    return postgres_url


REDIS_URL = os.environ.get("AINS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_settings_overrides() -> AsyncIterator[dict]:
    """Settings for the real Redis, under a key prefix of this test's own (removed afterwards)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await redis.ping()
    except Exception as exc:
        await redis.aclose()
        unavailable(f"Redis unavailable at {REDIS_URL}: {type(exc).__name__}: {exc}")
    prefix = f"ains_test_{uuid.uuid4().hex[:12]}:"
    yield {"redis_url": REDIS_URL, "redis_prefix": prefix}
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


# A clock tests move by hand (no sleeping): `utcnow()` answers it while the test runs.
class TestClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def at(self, moment: datetime) -> None:
        self.now = moment


@pytest.fixture
def clock() -> Iterator[TestClock]:
    test_clock = TestClock()
    clock_module.set_clock(test_clock)
    try:
        yield test_clock
    finally:
        clock_module.set_clock(None)
