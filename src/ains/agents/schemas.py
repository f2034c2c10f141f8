"""Request and response bodies of the agent endpoints."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, TypeAlias

from pydantic import Field, StrictFloat, StrictInt, StringConstraints, field_validator

from ains.core.schemas import AgentId, ApiModel, Capability, RequestModel, UTCTime

PublicKeyHex = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]
SignatureHex = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{128}$")]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Endpoint = Annotated[str, StringConstraints(max_length=2000)]
Timestamp = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Concurrency = Annotated[StrictInt, Field(ge=1, le=1000)]
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class AgentStatus(StrEnum):
    """An agent's status. INACTIVE: its heartbeat went silent (it comes back with the next heartbeat or claim).
    DEREGISTERED: gone for good; the row stays for the history, and every lookup treats it as unknown."""

    AVAILABLE = "AVAILABLE"
    BUSY = "BUSY"
    INACTIVE = "INACTIVE"
    DEREGISTERED = "DEREGISTERED"


# Heartbeating: what an agent may say it is, and whose silence the heartbeat duty watches.
LIVE_STATUSES = (AgentStatus.AVAILABLE, AgentStatus.BUSY)
# Registered (not deregistered): the statuses agents are listed, filtered and counted by.
REGISTERED_STATUSES = (*LIVE_STATUSES, AgentStatus.INACTIVE)
# Types of request fields and query parameters: Literals of the values rather than the enum, so a wrong value
# gets the same 422.
LiveStatusValue: TypeAlias = Literal[tuple(status.value for status in LIVE_STATUSES)]  # type: ignore[valid-type]
RegisteredStatusValue: TypeAlias = Literal[tuple(status.value for status in REGISTERED_STATUSES)]  # type: ignore[valid-type]


def _check_endpoint(value: str | None) -> str | None:
    if value is not None and not value.lower().startswith(("http://", "https://")):
        raise ValueError("endpoint must be an http(s) URL")
    return value


class AgentRegister(RequestModel):
    agent_id: AgentId
    display_name: DisplayName | None = None
    public_key: PublicKeyHex = Field(description="Ed25519 public key, 64 hex characters")
    endpoint: Endpoint | None = None
    capabilities: Annotated[list[Capability], Field(max_length=100)] = Field(default_factory=list)
    tags: Annotated[list[Tag], Field(max_length=100)] = Field(default_factory=list)
    max_concurrency: Concurrency = 5
    timestamp: Timestamp = Field(description="ISO 8601 time of signing, within 5 minutes of the server's clock")
    signature: SignatureHex = Field(
        description="hex Ed25519 signature of 'ains-register\\n{agent_id}\\n{public_key}\\n{timestamp}'"
    )
    registration_token: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="Required when the server's agent_registration is `token` (made by the admin)"
    )

    _endpoint = field_validator("endpoint")(_check_endpoint)


class AgentPatch(RequestModel):
    display_name: DisplayName | None = None
    endpoint: Endpoint | None = None
    capabilities: Annotated[list[Capability], Field(max_length=100)] | None = None
    tags: Annotated[list[Tag], Field(max_length=100)] | None = None
    max_concurrency: Concurrency | None = None

    _endpoint = field_validator("endpoint")(_check_endpoint)


class TokenRequest(RequestModel):
    timestamp: Timestamp
    signature: SignatureHex = Field(description="hex Ed25519 signature of 'ains-token\\n{agent_id}\\n{timestamp}'")


class HeartbeatRequest(RequestModel):
    status: LiveStatusValue | None = None
    # Held open up to this long, answering at once when one of the agent's tasks is cancelled.
    wait_seconds: Annotated[StrictInt | StrictFloat, Field(ge=0, le=30)] = 0


class HeartbeatResponse(ApiModel):
    acknowledged: bool
    cancelled_task_ids: list[str]
    next_heartbeat_in: float


class AgentOut(ApiModel):
    agent_id: str
    display_name: str | None
    public_key: str
    endpoint: str | None
    capabilities: list[str]
    tags: list[str]
    max_concurrency: int
    status: str
    trust_score: float
    trust_level: str
    last_heartbeat_at: UTCTime
    created_at: UTCTime
    updated_at: UTCTime


class AgentRegistered(AgentOut):
    api_key: str = Field(description="The agent's API key, shown only here")


class AgentToken(ApiModel):
    agent_id: str
    key_id: str
    api_key: str
    created_at: UTCTime


class AgentList(ApiModel):
    agents: list[AgentOut]
    total: int
    limit: int
    offset: int
