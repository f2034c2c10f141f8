"""The cap on a client's non-final tasks (SPEC 18: `max_pending_tasks_per_client`, 429 beyond).

Counting a client's open tasks on every submission would read up to a million
index entries per request. Instead each client has an *allowance* row: how many
more tasks it may submit before its tasks must be counted again. A submission
takes `n` from it with one guarded statement (`UPDATE … SET allowance =
allowance - n WHERE allowance >= n`). Only when that fails are the client's
open tasks counted (on the partial index `ix_tasks_client_open`, and never past
the cap), and the allowance set to `cap - count`. Tasks that finish do not give
allowance back, so the allowance is a lower bound of the true headroom: it can
only make AINS count sooner, never admit more. A client far from the cap is
counted once per `cap - count` submissions; one at the cap at most once per
`RECOUNT_SECONDS` in each process (in between it is refused from memory).

On PostgreSQL the allowance is taken by one autocommitted statement of its own
(on the driver's connection: SQLAlchemy's layer would cost more than the round
trip), so a busy client's submissions do not queue on its allowance row while
their own transactions run; a recount runs in a short transaction of its own. A
client's plain submission (no idempotency key, no dependencies, no webhook
hearing it) takes the allowance and inserts its task in one statement
(`tasks.queries.SUBMIT_ALONE`), so there a task the database refuses takes none.
An allowance taken by a submission that then fails is simply lost (the lower
bound holds). When the submission's transaction already holds a
connection (it looked up an idempotency key first), the allowance is taken in
that transaction instead: a second connection taken while holding one could
wait forever on a drained pool. Submissions in flight while a count runs are the
only slack: the cap can be passed by at most the number of that client's
submissions running concurrently at that moment. SQLite has one writer at a
time, so there it is the submission's own transaction and exact.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Index, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ains.auth.models import ClientQuota
from ains.core.clock import utcnow
from ains.core.database import driver_connection
from ains.core.errors import AinsError
from ains.core.metrics import DB_STATEMENTS
from ains.core.work import Work
from ains.tasks.models import Task
from ains.tasks.schemas import FINAL_STATUSES

RECOUNT_SECONDS = 1.0
OPEN_TASKS = "status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"

# Declared here, next to its only reader (created by migration 0008).
Index(
    "ix_tasks_client_open",
    Task.client_id,
    postgresql_where=text(OPEN_TASKS),
    sqlite_where=text(OPEN_TASKS),
)


class PendingCapReached(AinsError):
    status_code = 429


async def reserve(work: Work, client_id: str, n: int) -> None:
    """Take `n` from `client_id`'s allowance for a submission of `n` tasks, or refuse it (429)."""
    if n <= 0:
        return
    session = work.session
    cap = work.settings.max_pending_tasks_per_client
    engine = session.bind
    assert isinstance(engine, AsyncEngine), "sessions of ains.core.database are bound to the engine"
    if refused_lately(engine, client_id, work.now):
        _refuse(cap)
    full = _full.setdefault(engine.sync_engine, {})
    dialect = engine.dialect.name
    if dialect == "sqlite" or _holds_connection(session):
        # A second connection while holding one could wait forever on a drained pool: stay in the transaction.
        allowed = await _reserve(session, dialect, client_id, n, cap)
    else:
        allowed = await _take_alone(engine, client_id, n)
        if not allowed:
            async with engine.begin() as connection:
                allowed = await _reserve(connection, dialect, client_id, n, cap)
    if not allowed:
        if len(full) > 10_000:
            full.clear()
        full[client_id] = work.now.timestamp()
        _refuse(cap)
    full.pop(client_id, None)


async def reserve_many(work: Work, client_ids: list[str]) -> None:
    """`reserve` for a batch: each client's share of it (the admin may submit for several clients at once)."""
    for client_id, n in Counter(client_ids).items():
        await reserve(work, client_id, n)


def refused_lately(engine: AsyncEngine, client_id: str, now: datetime) -> bool:
    """This process found the client at its cap less than `RECOUNT_SECONDS` ago: refuse it without a count."""
    full_since = _full.get(engine.sync_engine, {}).get(client_id)
    return full_since is not None and now.timestamp() - full_since < RECOUNT_SECONDS


def taken(engine: AsyncEngine, client_id: str) -> None:
    """A submission took from the client's allowance by a statement of its own (`tasks.queries.SUBMIT_ALONE`)."""
    full = _full.get(engine.sync_engine)
    if full:
        full.pop(client_id, None)


def _holds_connection(session: AsyncSession) -> bool:
    transaction = session.sync_session.get_transaction()
    return bool(transaction is not None and transaction._connections)


# Clients found at the cap by this process (per database), and when: refused without a new count for
# RECOUNT_SECONDS.
_full: WeakKeyDictionary[Any, dict[str, float]] = WeakKeyDictionary()


TAKE = "UPDATE client_quotas SET allowance = allowance - $2 WHERE client_id = $1 AND allowance >= $2 RETURNING 1"


async def _take_alone(engine: AsyncEngine, client_id: str, n: int) -> bool:
    """PostgreSQL: take `n` from the allowance in one autocommitted statement; False when it holds too little."""
    async with driver_connection(engine) as connection:
        DB_STATEMENTS.labels("write").inc()
        return await connection.fetchval(TAKE, client_id, n) is not None


async def _reserve(conn: Any, dialect: str, client_id: str, n: int, cap: int) -> bool:
    taken = await conn.execute(
        update(ClientQuota)
        .where(ClientQuota.client_id == client_id, ClientQuota.allowance >= n)
        .values(allowance=ClientQuota.allowance - n)
        .returning(ClientQuota.allowance)
    )
    if taken.first() is not None:
        return True
    allowance = cap - await _count_open(conn, client_id, cap)
    allowed = allowance >= n
    await _store(conn, dialect, client_id, allowance - n if allowed else allowance, utcnow())
    return allowed


async def _count_open(conn: Any, client_id: str, cap: int) -> int:
    open_rows = (
        select(Task.task_id)
        .where(Task.client_id == client_id, Task.status.not_in(FINAL_STATUSES))
        .limit(cap)
        .subquery()
    )
    return int((await conn.execute(select(func.count()).select_from(open_rows))).scalar_one())


async def _store(conn: Any, dialect: str, client_id: str, allowance: int, now: datetime) -> None:
    dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = dialect_insert(ClientQuota).values(client_id=client_id, allowance=allowance, counted_at=now)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[ClientQuota.client_id], set_={"allowance": allowance, "counted_at": now}
        )
    )


def _refuse(cap: int) -> None:
    raise PendingCapReached(
        f"This client already has {cap} tasks that are not final (max_pending_tasks_per_client); "
        "wait for some to finish"
    )
