"""Trust business rules: every change of a score, its hash-chained record, and the agent's metrics.

A change locks the agent row (FOR UPDATE), so concurrent changes for one agent
queue up instead of losing an update, and it joins the caller's transaction, so
the score, the record and the task change that caused them commit together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, bindparam, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause

from ains.agents.models import Agent
from ains.agents.schemas import AgentStatus
from ains.audit import service as audit
from ains.core.bulk import BulkInsert
from ains.core.cache import AGENT as AGENT_CACHE
from ains.core.clock import new_id
from ains.core.database import UTCDateTime, dialect_name, note_changed_key, table_of
from ains.core.errors import NotFound
from ains.core.principal import Principal
from ains.core.transaction_state import Memo
from ains.core.work import Work
from ains.trust.levels import COMPLETED_DELTA, FAILED_DELTA, TRUSTED_SUBMITTER_FLOOR, clamp
from ains.trust.models import TrustRecord

TASK_COMPLETED = "task_completed"
TASK_FAILED = "task_failed"
TASK_TIMEOUT = "task_timeout"
MANUAL_ADJUSTMENT = "manual_adjustment"


def record_digest(previous_hash: str, record: Any) -> str:
    """SHA-256 over the previous record's hash and this record's fields, in a canonical JSON form."""
    fields = {
        "record_id": record.record_id,
        "agent_id": record.agent_id,
        "seq": record.seq,
        "event_type": record.event_type,
        "task_id": record.task_id,
        "trust_delta": record.trust_delta,
        "trust_score_before": record.trust_score_before,
        "trust_score_after": record.trust_score_after,
        "reason": record.reason,
        "created_at": record.created_at.isoformat(),
    }
    return hashlib.sha256((previous_hash + _CANONICAL.encode(fields)).encode()).hexdigest()


# The chain's canonical JSON. Never change it: verifying recomputes every stored record's digest with it. One
# encoder for all records (json.dumps builds one per call when given options: a third of the digest's cost).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Agent rows this transaction locked, by id.
LOCKED_AGENTS: Memo[dict[str, Agent]] = Memo("locked_agents", dict)


async def lock_agent(work: Work, agent_id: str) -> Agent:
    """The agent row, locked for the rest of the transaction.

    A lock lasts until the transaction ends, so a batch that changes one agent's
    score fifty times asks the database once; the row is read again only if the
    session expired it (a savepoint rolled back).
    """
    locked = work.memo(LOCKED_AGENTS)
    agent = locked.get(agent_id)
    if agent is not None and not inspect(agent).expired_attributes:
        return agent
    agent = await work.session.scalar(select(Agent).where(Agent.agent_id == agent_id).with_for_update())
    if agent is None:
        raise NotFound(f"Agent {agent_id} not found")
    locked[agent_id] = agent
    return agent


def apply_change(
    work: Work, agent: Agent, delta: float, event_type: str, *, task_id: str | None = None, reason: str | None = None
) -> TrustRecord:
    """Change a locked agent's score by `delta` (clamped) and append its record to the chain."""
    now = work.now
    before = agent.trust_score
    after = clamp(before + delta)
    record = TrustRecord(
        record_id=new_id("trust"),
        agent_id=agent.agent_id,
        seq=agent.trust_records_count + 1,
        event_type=event_type,
        task_id=task_id,
        trust_delta=round(after - before, 6),
        trust_score_before=before,
        trust_score_after=after,
        reason=reason,
        created_at=now,
        previous_hash=agent.trust_chain_head,
    )
    record.record_hash = record_digest(agent.trust_chain_head, record)
    work.session.add(record)
    agent.trust_score = after
    agent.trust_records_count = record.seq
    agent.trust_chain_head = record.record_hash
    agent.updated_at = now
    return record


async def attempt_completed(
    work: Work, agent_id: str, task_id: str, started_at: datetime | None, *, moves_trust: bool = True
) -> None:
    """A completed attempt: counted always; it raises the score (with a record) only when `moves_trust`."""
    agent = await lock_agent(work, agent_id)
    if moves_trust:
        apply_change(work, agent, COMPLETED_DELTA, TASK_COMPLETED, task_id=task_id)
    agent.total_tasks_completed += 1
    if started_at is not None:
        agent.total_completion_seconds += max(0.0, (work.now - started_at).total_seconds())
    agent.last_task_completed_at = work.now


async def attempt_failed(
    work: Work, agent_id: str, task_id: str, *, timeout: bool, reason: str | None, moves_trust: bool = True
) -> None:
    """A failed attempt: counted always; it lowers the score (with a record) only when `moves_trust`."""
    agent = await lock_agent(work, agent_id)
    event_type = TASK_TIMEOUT if timeout else TASK_FAILED
    if moves_trust:
        apply_change(work, agent, FAILED_DELTA, event_type, task_id=task_id, reason=reason)
    agent.total_tasks_failed += 1


async def adjust(
    work: Work, principal: Principal, agent_id: str, delta: float, reason: str
) -> tuple[Agent, TrustRecord]:
    agent = await lock_agent(work, agent_id)
    if agent.status == AgentStatus.DEREGISTERED:
        raise NotFound(f"Agent {agent_id} not found")
    record = apply_change(work, agent, delta, MANUAL_ADJUSTMENT, reason=reason)
    audit.record(
        work,
        principal,
        "trust.adjust",
        "agent",
        agent_id,
        {"delta": delta, "reason": reason, "before": record.trust_score_before, "after": record.trust_score_after},
    )
    return agent, record


def metrics(agent: Agent) -> dict[str, Any]:
    finished = agent.total_tasks_completed + agent.total_tasks_failed
    return {
        "total_tasks_completed": agent.total_tasks_completed,
        "total_tasks_failed": agent.total_tasks_failed,
        "success_rate": round(agent.total_tasks_completed / finished, 4) if finished else 0.0,
        "avg_completion_time_seconds": (
            round(agent.total_completion_seconds / agent.total_tasks_completed, 3)
            if agent.total_tasks_completed
            else 0.0
        ),
        "last_task_completed_at": agent.last_task_completed_at,
    }


async def history(session: AsyncSession, agent_id: str, *, limit: int, before_seq: int | None) -> list[TrustRecord]:
    query = select(TrustRecord).where(TrustRecord.agent_id == agent_id).order_by(TrustRecord.seq.desc()).limit(limit)
    if before_seq is not None:
        query = query.where(TrustRecord.seq < before_seq)
    return list(await session.scalars(query))


async def leaderboard(session: AsyncSession, *, limit: int, min_tasks: int) -> list[Agent]:
    finished = Agent.total_tasks_completed + Agent.total_tasks_failed
    query = (
        select(Agent)
        .where(Agent.status != AgentStatus.DEREGISTERED, finished >= min_tasks)
        .order_by(Agent.trust_score.desc(), Agent.total_tasks_completed.desc(), Agent.agent_id)
        .limit(limit)
    )
    return list(await session.scalars(query))


@dataclass(frozen=True)
class ChainCheck:
    valid: bool
    records_checked: int
    first_bad_record_id: str | None


async def verify(session: AsyncSession, agent: Agent) -> ChainCheck:
    """Recompute the agent's chain from the first record; any edit, deletion or insertion breaks it."""
    records = await session.scalars(
        select(TrustRecord).where(TrustRecord.agent_id == agent.agent_id).order_by(TrustRecord.seq)
    )
    previous_hash = ""
    previous_after: float | None = None
    checked = 0
    last_id: str | None = None
    for expected_seq, record in enumerate(records, start=1):
        checked += 1
        intact = (
            record.seq == expected_seq
            and record.previous_hash == previous_hash
            and record_digest(previous_hash, record) == record.record_hash
            and (previous_after is None or record.trust_score_before == previous_after)
        )
        if not intact:
            return ChainCheck(False, checked, record.record_id)
        previous_hash = record.record_hash
        previous_after = record.trust_score_after
        last_id = record.record_id
    # The head on the agent row catches a record removed from, or added to, the end.
    if checked != agent.trust_records_count or previous_hash != agent.trust_chain_head:
        return ChainCheck(False, checked, last_id)
    return ChainCheck(True, checked, None)


def moves_trust(task: Any, holder: str) -> bool:
    """SPEC 14, trust flows from trusted submitters: not from an agent's own tasks, nor from an agent that was
    below `high` when it submitted (`submitter_trusted`, decided at submission)."""
    return bool(task.submitter_trusted) and task.client_id != holder


async def submitter_trusted(session: AsyncSession, principal: Principal) -> bool:
    """At submission: the admin and clients are trusted submitters; an agent is while `high` or better."""
    if principal.kind != "agent":
        return True
    score = await session.scalar(select(Agent.trust_score).where(Agent.agent_id == principal.id))
    return score is not None and score >= TRUSTED_SUBMITTER_FLOOR


# --- reports, in plain statements -------------------------------------------------------------------------------
# A report (`ains.tasks.reports`) locks the agent row once, appends the records of all its outcomes in one
# INSERT and writes the agent's score, chain head and metrics in one UPDATE: no ORM object, no flush.

_AGENT_FOR_TRUST = """
SELECT agent_id, trust_score, trust_records_count, trust_chain_head, total_tasks_completed, total_tasks_failed,
    total_completion_seconds, last_task_completed_at, updated_at
FROM agents WHERE agent_id = :agent_id {lock}
"""
LOCK_AGENT = {
    dialect: text(_AGENT_FOR_TRUST.format(lock=lock)).columns(
        last_task_completed_at=UTCDateTime, updated_at=UTCDateTime, trust_score=Float, total_completion_seconds=Float
    )
    # SQLite: BEGIN IMMEDIATE already made this transaction the only writer.
    for dialect, lock in (("postgresql", "FOR UPDATE"), ("sqlite", ""))
}
_INSERT_RECORDS = BulkInsert(table_of(TrustRecord))
_UPDATE_AGENT_SQL = """
    UPDATE agents SET trust_score = :trust_score, trust_records_count = :trust_records_count,
        trust_chain_head = :trust_chain_head, total_tasks_completed = :total_tasks_completed,
        total_tasks_failed = :total_tasks_failed, total_completion_seconds = :total_completion_seconds,
        last_task_completed_at = :last_task_completed_at, updated_at = :updated_at
    WHERE agent_id = :agent_id
    """
_AGENT_TYPES = (
    bindparam("trust_score", type_=Float),
    bindparam("total_completion_seconds", type_=Float),
    bindparam("trust_records_count", type_=Integer),
    bindparam("last_task_completed_at", type_=UTCDateTime),
    bindparam("updated_at", type_=UTCDateTime),
)
_UPDATE_AGENT = text(_UPDATE_AGENT_SQL).bindparams(*_AGENT_TYPES)
# PostgreSQL: the records and the agent in one statement (the INSERT as a data-modifying WITH, which runs whether or
# not the UPDATE reads it): one round trip less per report. Built on first use, for the records' keys.
_RECORDS_AND_AGENT: dict[tuple[str, ...], TextClause] = {}


def _records_and_agent(names: tuple[str, ...]) -> TextClause:
    statement = _RECORDS_AND_AGENT.get(names)
    if statement is None:
        insert_sql = _INSERT_RECORDS.statement(names).text
        statement = text(f"WITH records AS ({insert_sql}) {_UPDATE_AGENT_SQL}").bindparams(*_AGENT_TYPES)
        _RECORDS_AND_AGENT[names] = statement
    return statement


@dataclass(frozen=True)
class Outcome:
    """How one attempt of a report ended, for the agent's trust and metrics."""

    task_id: str
    completed: bool
    moves_trust: bool
    started_at: datetime | None = None  # completions: for the average completion time
    reason: str | None = None  # failures: the error, kept in the trust record


async def lock_agent_row(session: AsyncSession, agent_id: str) -> Any:
    """The agent's trust fields, its row locked for the rest of the transaction (lock order: agent, then tasks)."""
    row = (await session.execute(LOCK_AGENT[dialect_name(session)], {"agent_id": agent_id})).first()
    if row is None:
        raise NotFound(f"Agent {agent_id} not found")
    return row


async def record_outcomes(work: Work, agent: Any, outcomes: list[Outcome]) -> None:
    """What `attempt_completed` and `attempt_failed` do for each outcome in turn, for an agent locked by
    `lock_agent_row`, written in two statements: the chained records (those that move trust), and the agent."""
    if not outcomes:
        return
    session, now = work.session, work.now
    state = {
        "agent_id": agent.agent_id,
        "trust_score": agent.trust_score,
        "trust_records_count": agent.trust_records_count,
        "trust_chain_head": agent.trust_chain_head,
        "total_tasks_completed": agent.total_tasks_completed,
        "total_tasks_failed": agent.total_tasks_failed,
        "total_completion_seconds": agent.total_completion_seconds,
        "last_task_completed_at": agent.last_task_completed_at,
        "updated_at": agent.updated_at,
    }
    records: list[dict[str, Any]] = []
    for outcome in outcomes:
        if outcome.moves_trust:
            before = state["trust_score"]
            after = clamp(before + (COMPLETED_DELTA if outcome.completed else FAILED_DELTA))
            record = {
                "record_id": new_id("trust"),
                "agent_id": agent.agent_id,
                "seq": state["trust_records_count"] + 1,
                "event_type": TASK_COMPLETED if outcome.completed else TASK_FAILED,
                "task_id": outcome.task_id,
                "trust_delta": round(after - before, 6),
                "trust_score_before": before,
                "trust_score_after": after,
                "reason": None if outcome.completed else outcome.reason,
                "created_at": now,
                "previous_hash": state["trust_chain_head"],
            }
            record["record_hash"] = record_digest(state["trust_chain_head"], _Fields(record))
            records.append(record)
            state |= {
                "trust_score": after,
                "trust_records_count": record["seq"],
                "trust_chain_head": record["record_hash"],
                "updated_at": now,
            }
        if outcome.completed:
            state["total_tasks_completed"] += 1
            if outcome.started_at is not None:
                state["total_completion_seconds"] += max(0.0, (now - outcome.started_at).total_seconds())
            state["last_task_completed_at"] = now
        else:
            state["total_tasks_failed"] += 1
    if records and dialect_name(session) == "postgresql":
        statement = _records_and_agent(tuple(records[0]))
        await session.execute(statement, state | {"rows": _INSERT_RECORDS.parameter(records)})
    else:
        await _INSERT_RECORDS.run(session, records)
        await session.execute(_UPDATE_AGENT, state)
    note_changed_key(session, AGENT_CACHE, agent.agent_id)


class _Fields(dict):
    def __getattr__(self, name: str) -> Any:
        return self[name]


async def registered_agent(session: AsyncSession, agent_id: str) -> Agent:
    """The agent whose trust is asked about; a deregistered or unknown one is 404."""
    agent = await session.scalar(select(Agent).where(Agent.agent_id == agent_id))
    if agent is None or agent.status == AgentStatus.DEREGISTERED:
        raise NotFound(f"Agent {agent_id} not found")
    return agent
