"""API keys (stored only as SHA-256 hashes) and the signatures already used (replay guard)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ains.core.database import Base, JSONType, UTCDateTime


class ApiKey(Base):
    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # client | agent
    principal_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # SPEC 18: a key may expire; a rotated key's grace period is its expiry.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Per-key token bucket; None means the server's defaults (rate_limit_per_second, rate_limit_burst).
    rate_limit_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rotated_from: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the key this one replaced
    expired_use_logged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_api_keys_principal", "kind", "principal_id"),)


class RegistrationToken(Base):
    """A token an agent must present to register when `agent_registration` is `token` (stored as a hash)."""

    __tablename__ = "registration_tokens"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    max_uses: Mapped[int | None] = mapped_column(Integer, nullable=True)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ClientQuota(Base):
    """How many more non-final tasks a client may submit before its tasks must be counted again.

    A lower bound on the client's headroom under `max_pending_tasks_per_client`: submissions take from it,
    tasks that finish do not give back, so it only errs towards counting again (see ains.auth.quota).
    """

    __tablename__ = "client_quotas"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    allowance: Mapped[int] = mapped_column(Integer)
    counted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsedSignature(Base):
    __tablename__ = "used_signatures"

    signature_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
