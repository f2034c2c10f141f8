"""The database: engines, column types and the unit-of-work boundary.

Services never commit. A request or a background duty opens one
`Database.transaction()`, and everything it changes commits together; hooks
registered with `after_commit` run only once the commit has succeeded, and so
do the cache invalidations and the wake-ups the transaction announced
(`ains.core.signals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, cast

from pydantic_core import from_json
from sqlalchemy import JSON, DateTime, Table, event
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import greenlet_spawn

from ains.core.cache import Cache
from ains.core.metrics import DB_STATEMENTS
from ains.core.signals import CACHE, SENT_IN_TRANSACTION, Wakeups, announcements_of
from ains.core.transaction_state import AfterCommit, TransactionState, state_of, take_state

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on both databases (SQLite keeps no zone, so it stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


@event.listens_for(Session, "before_flush")
def _note_cached_rows(session: Session, _context: Any, _instances: Any) -> None:
    """Remember which cached rows (models with `__cache_kind__`) this transaction changes."""
    note_changed(session, *session.new, *session.dirty, *session.deleted)


def note_changed(session: Session | AsyncSession, *objects: Any) -> None:
    """Remember these rows as changed, for the cache; a statement that bypasses the flush calls this itself."""
    changed = state_of(session).cache_changed
    for obj in objects:
        kind = getattr(type(obj), "__cache_kind__", None)
        if kind is not None:
            changed.setdefault(kind, set()).add(getattr(obj, type(obj).__cache_key__))


def note_changed_key(session: Session | AsyncSession, kind: str, key: str) -> None:
    """Like `note_changed`, for a row a plain SQL statement changed (no object to hand)."""
    state_of(session).cache_changed.setdefault(kind, set()).add(key)


def after_commit(session: AsyncSession, hook: AfterCommit) -> None:
    """Run `hook` once the session's transaction has committed (never on rollback)."""
    state_of(session).after_commit.append(hook)


def load_json(text: str | bytes) -> Any:
    """JSON column values as Python objects: pydantic-core's parser, a third of `json.loads`'s cost (decoding the
    JSON of claimed and reported tasks was 5 % of the server's CPU end to end). Text it refuses (a lone surrogate
    escape, which PostgreSQL never stores but an old SQLite row might hold) goes to `json.loads`."""
    try:
        return from_json(text)
    except ValueError:
        return json.loads(text)


def _sqlite_engine(url: str, *, immediate: bool) -> AsyncEngine:
    engine = create_async_engine(url, connect_args={"timeout": 30}, json_deserializer=load_json)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN is ours to issue.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        # WAL is a property of the file, set once (by the migrations, see ains/migrations/env.py). Switching
        # needs the database to itself, so connections opened together on a new file must not all try it.
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0] != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front, so two processes never both read
        # a PENDING row and then both try to assign it.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _drop_closed_connections(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "checkout")
    def _check(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # asyncpg marks a connection closed as soon as the server ends it (a restart, pg_terminate_backend);
        # raising here makes the pool throw it away and hand out another.
        raw = getattr(dbapi_connection, "_connection", None)
        if raw is not None and raw.is_closed():
            raise DisconnectionError()


def _count_statements(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        verb = statement.lstrip()[:6].upper()
        DB_STATEMENTS.labels("read" if verb == "SELECT" else "write").inc()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, immediate=True)
            self.read_engine = _sqlite_engine(url, immediate=False)
        else:
            # No pool_pre_ping: on asyncpg it costs three round trips per checkout (BEGIN, ping, ROLLBACK),
            # more than most requests' own statements. A connection the server closed is noticed for free
            # instead (see _drop_closed_connections); one cut silently still fails its next request (503).
            self.engine = create_async_engine(url, pool_size=20, max_overflow=20, json_deserializer=load_json)
            _drop_closed_connections(self.engine)
            self.read_engine = self.engine
        for engine in {self.engine, self.read_engine}:
            _count_statements(engine)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False, autoflush=False)
        # One writer at a time inside this process on SQLite; BEGIN IMMEDIATE does it across processes.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        # Told, after each commit, which cached rows changed (see ains.core.cache).
        self.cache: Cache | None = None
        # Told, after each commit, what the transaction announced (see ains.core.signals).
        self.wakeups: Wakeups | None = None
        # This process's name on the wake-up channel, when it listens (PostgreSQL; see ains.core.listener).
        self.origin: str | None = None

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    @contextlib.asynccontextmanager
    async def transaction(self, *, lean: bool = False) -> AsyncIterator[AsyncSession]:
        """One write transaction. `lean` (PostgreSQL; ignored on SQLite): on the driver's own connection, for hot
        paths whose every statement is plain SQL (see `DriverSession`)."""
        if lean and not self.is_sqlite:
            async with driver_connection(self.engine) as connection:
                driver_session = DriverSession(self.engine, connection)
                async with connection.transaction():
                    yield cast(AsyncSession, driver_session)  # read by the services like one (see DriverSession)
                    await self._send_never_lost(driver_session)
            await self._committed(take_state(driver_session))
            return
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            session = self._sessions()
            try:
                async with session.begin():
                    yield session
                    await session.flush()  # the last changes, so the cache and wake-ups below are complete
                    await self._send_never_lost(session)
                state = take_state(session)
            finally:
                await session.close()
        await self._committed(state)

    async def _send_never_lost(self, session: Any) -> None:
        never_lost = [a for a in announcements_of(state_of(session)) if a[0] in SENT_IN_TRANSACTION]
        if never_lost and self.origin is not None:
            from ains.core.listener import notify_in_transaction

            await notify_in_transaction(session, self.origin, never_lost)

    async def _committed(self, state: TransactionState) -> None:
        """What a commit sets off: cache invalidations, wake-ups here and in the other processes, after-commit hooks."""
        announcements, hooks, changed = announcements_of(state), state.after_commit, state.cache_changed
        if self.cache is not None:
            for kind, keys in changed.items():
                await self.cache.invalidate(kind, keys)
        if self.wakeups is not None:
            # An in-process cache in another process hears of the change only through the wake-up link.
            unshared = changed and self.cache is not None and not self.cache.shared
            remote = [(CACHE, kind, ",".join(sorted(keys))) for kind, keys in changed.items()] if unshared else []
            self.wakeups.committed(announcements, remote_only=remote)
        for hook in hooks:
            result = hook()
            if asyncio.iscoroutine(result):
                await result

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        session = self._read_sessions()
        try:
            async with session.begin():
                yield session
        finally:
            await session.close()

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


@contextlib.asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """A pooled PostgreSQL connection as asyncpg's own object, in autocommit: for one-statement hot paths.

    SQLAlchemy's execution layer around a short transaction costs several times the
    round trip itself (benchmarks/PROFILE.md); a single statement needs no
    transaction. Driver errors come out as SQLAlchemy's, by their SQLSTATE class, so
    they answer as on the session path (a refused value 422, a constraint 409, the
    rest 503). A connection that broke is not reused, and, as SQLAlchemy does, every
    connection the pool made before it is replaced at its next checkout: a database
    restart ends them all at once.
    """
    pool = cast(QueuePool, engine.sync_engine.pool)
    fairy = await engine.raw_connection()
    connection = fairy.driver_connection
    assert connection is not None, "a connection just checked out of the pool is live"
    try:
        yield connection
    except Exception as exc:
        if not isinstance(exc, DBAPIError) and type(exc).__module__.startswith("asyncpg"):
            if connection.is_closed():
                pool._invalidate(fairy, exc)
            raise _SQLALCHEMY_ERRORS.get(str(getattr(exc, "sqlstate", ""))[:2], OperationalError)(
                "(driver connection)", None, exc
            ) from exc
        raise
    except BaseException:
        # Cancelled (or interrupted) while a statement, a BEGIN or a COMMIT was on the wire: where the server got to
        # is unknown (a BEGIN it ran whose answer asyncpg never read looks like no transaction at all), so the
        # connection is closed rather than handed to the next user inside a transaction.
        pool._invalidate(fairy, None)
        raise
    finally:
        if not connection.is_closed() and connection.is_in_transaction():
            # Its transaction never ended (a lean transaction's rollback failed): the pool, which did not start it,
            # would not end it either, and the next user would run inside it.
            pool._invalidate(fairy, None)
        if pool.overflow() > 0:
            # The pool is over its size, so it may close this connection rather than keep it: asyncpg's close must
            # be awaited, which SQLAlchemy does only inside its greenlet (outside it logs MissingGreenlet and
            # leaves the connection to the garbage collector).
            await greenlet_spawn(fairy.close)
        else:
            fairy.close()


# SQLSTATE classes the session path tells apart (see ains.core.errors); any other is an OperationalError.
_SQLALCHEMY_ERRORS: dict[str, type[DBAPIError]] = {"22": DataError, "23": IntegrityError}


_ASYNCPG = postgresql.asyncpg.dialect()


class DriverRow(tuple[Any, ...]):
    """A row the driver returned, read as services read SQLAlchemy's rows: by position, by name as an attribute,
    or through `_mapping`."""

    _mapping: dict[str, Any]

    def __new__(cls, record: Any) -> DriverRow:
        row = super().__new__(cls, record.values())
        row._mapping = dict(record.items())
        return row

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None


class DriverResult:
    """The rows of one statement run by a `DriverSession`, with the few readers the services use."""

    def __init__(self, records: list[Any]) -> None:
        self._rows = [DriverRow(record) for record in records]

    def __iter__(self) -> Iterator[DriverRow]:
        return iter(self._rows)

    def all(self) -> list[DriverRow]:
        return self._rows

    def first(self) -> DriverRow | None:
        return self._rows[0] if self._rows else None


class DriverSession:
    """A PostgreSQL transaction on the driver's own connection, which the services read like an `AsyncSession`:
    `execute` of plain SQL (`text()`, with `.columns()` or `.bindparams()`; a list of parameter sets is an
    executemany), `info` (the transaction's state) and `bind`. Anything else (a Core statement, any other
    session method) raises `NotPlainSQL`, on which `AppContext.run` runs the unit of work again in a session: a
    hot path's rare branches (a completed task's dependents, say) may use Core, at the cost of the lean try.

    SQLAlchemy's session and execution layer cost a claim more than its two statements (benchmarks/PROFILE.md).
    A statement's text is compiled once for asyncpg ($n parameters, in order); asyncpg prepares it once per
    connection. JSON columns come back decoded (the engine set the connection's codecs) and times as UTC."""

    def __init__(self, engine: AsyncEngine, connection: Any) -> None:
        self.bind = engine
        self.info: dict[str, Any] = {}
        self._connection = connection

    async def execute(
        self, statement: Any, params: dict[str, Any] | list[dict[str, Any]] | None = None
    ) -> DriverResult:
        """Run the statement; a list of parameter sets runs it once per set (an executemany), returning no rows."""
        sql, names = _driver_sql(statement)
        DB_STATEMENTS.labels("read" if sql.lstrip()[:6].upper() == "SELECT" else "write").inc()
        if isinstance(params, list):
            await self._connection.executemany(sql, [[each[name] for name in names] for each in params])
            return DriverResult([])
        args = [params[name] for name in names] if params else []
        return DriverResult(await self._connection.fetch(sql, *args))

    async def flush(self) -> None:
        """Nothing waits to be written: every statement ran when it was executed."""

    def __getattr__(self, name: str) -> Any:
        # Every other part of a session (`scalar(s)`, `add`, `get`, `merge`, `connection`, …) is SQLAlchemy's: a
        # unit of work that reaches for one runs again in a session rather than failing with a 500.
        if name.startswith("_"):
            raise AttributeError(name)
        raise NotPlainSQL(f"a lean transaction has no {name}")


class NotPlainSQL(TypeError):
    """A lean transaction met a statement that is not plain SQL: its unit of work must run in a session instead
    (`AppContext.run` does, the lean transaction having rolled back)."""


_driver_statements: dict[int, tuple[Any, str, tuple[str, ...]]] = {}


def _driver_sql(statement: Any) -> tuple[str, tuple[str, ...]]:
    """PostgreSQL's text of a plain SQL statement for asyncpg, and the names of its $n parameters in order."""
    known = _driver_statements.get(id(statement))
    if known is not None and known[0] is statement:
        return known[1], known[2]
    if not isinstance(statement, TextClause | TextualSelect):
        raise NotPlainSQL(f"a lean transaction runs plain SQL only, not {type(statement).__name__}")
    compiled = statement.compile(dialect=_ASYNCPG)
    names = tuple(compiled.positiontup or ())
    if len(_driver_statements) > 1_000:  # statements made per call (a NOTIFY's, say) must not pile up
        _driver_statements.clear()
    _driver_statements[id(statement)] = (statement, compiled.string, names)
    return compiled.string, names


def table_of(model: Any) -> Table:
    """A model's table, for Core statements (typed as the Table it always is)."""
    return cast(Table, model.__table__)


def dialect_name(session: AsyncSession) -> str:
    """`postgresql` or `sqlite`: the database this session talks to."""
    bind = session.bind
    assert bind is not None, "every session of Database is bound to its engine"
    return bind.dialect.name


def json_array_contains(session: AsyncSession, column: Any, value: str) -> Any:
    """SQL: the JSON array in `column` holds `value` (JSONB containment on PostgreSQL, json_each on SQLite)."""
    from sqlalchemy import bindparam, exists, func, literal_column, select, type_coerce

    if dialect_name(session) == "postgresql":
        return type_coerce(column, JSONB).contains([value])
    each = func.json_each(column).table_valued("value")
    return exists(select(literal_column("1")).select_from(each).where(each.c.value == bindparam(None, value)))
