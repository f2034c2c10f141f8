"""Trust records: one per change of an agent's score, chained by hash per agent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ains.core.database import Base, UTCDateTime


class TrustRecord(Base):
    __tablename__ = "trust_records"

    record_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, 3… per agent: the chain's order
    event_type: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    trust_delta: Mapped[float] = mapped_column(Float)
    trust_score_before: Mapped[float] = mapped_column(Float)
    trust_score_after: Mapped[float] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    previous_hash: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("agent_id", "seq", name="uq_trust_records_agent_seq"),
        Index("ix_trust_records_agent_id", "agent_id"),
        Index("ix_trust_records_created_at", "created_at"),
        Index("ix_trust_records_agent_created", "agent_id", "created_at"),
    )
