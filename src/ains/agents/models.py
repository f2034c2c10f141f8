"""The agent row: identity, capabilities, liveness and (later) trust."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ains.core.database import Base, JSONType, UTCDateTime
from ains.trust.levels import trust_level


class Agent(Base):
    __tablename__ = "agents"
    __cache_kind__ = "agent"
    __cache_key__ = "agent_id"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    public_key: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    capabilities: Mapped[list[str]] = mapped_column(JSONType)
    tags: Mapped[list[str]] = mapped_column(JSONType)
    max_concurrency: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    trust_score: Mapped[float] = mapped_column(Float)
    # The trust chain's head, so appending a record never scans history.
    trust_records_count: Mapped[int] = mapped_column(Integer, default=0)
    trust_chain_head: Mapped[str] = mapped_column(String(64), default="")
    total_tasks_completed: Mapped[int] = mapped_column(Integer, default=0)
    total_tasks_failed: Mapped[int] = mapped_column(Integer, default=0)
    total_completion_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    last_task_completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def trust_level(self) -> str:
        return trust_level(self.trust_score)

    __table_args__ = (
        Index("ix_agents_public_key", "public_key", unique=True),
        Index("ix_agents_status", "status"),
        Index("ix_agents_last_heartbeat_at", "last_heartbeat_at"),
    )


Index("ix_agents_trust_score", Agent.trust_score.desc())
