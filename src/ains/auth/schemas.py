"""Request and response bodies of the key endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, StringConstraints

from ains.core.principal import CLIENT_SCOPES
from ains.core.schemas import ApiModel, ClientId, RequestModel, UTCTime

Scope = Literal[CLIENT_SCOPES]  # type: ignore[valid-type]


RatePerSecond = Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)]
Burst = Annotated[int, Field(ge=1, le=10_000_000)]


class ApiKeyCreate(RequestModel):
    client_id: ClientId
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(CLIENT_SCOPES))] | None = Field(
        None, description="Defaults to all: " + ", ".join(CLIENT_SCOPES)
    )
    expires_at: UTCTime | None = Field(None, description="When the key stops working (401 after); none: never")
    rate_limit_per_second: RatePerSecond | None = Field(
        None, description="Token bucket refill rate; defaults to the server's rate_limit_per_second"
    )
    rate_limit_burst: Burst | None = Field(
        None, description="Token bucket size; defaults to the server's rate_limit_burst"
    )


class ApiKeyRotate(RequestModel):
    grace_seconds: Annotated[float, Field(ge=0, le=30 * 86400, allow_inf_nan=False)] = Field(
        3600, description="How long the old key keeps working"
    )
    expires_at: UTCTime | None = Field(
        None, description="The new key's expiry; by default it lives as long as the old key was meant to"
    )


class ApiKeyOut(ApiModel):
    key_id: str
    kind: str = Field(description="client or agent")
    client_id: str = Field(
        validation_alias=AliasChoices("principal_id", "client_id"),
        description="The client id, or the agent id for agent keys",
    )
    name: str
    scopes: list[str]
    created_at: UTCTime
    revoked_at: UTCTime | None
    expires_at: UTCTime | None = None
    rate_limit_per_second: float | None = Field(None, description="None: the server's default")
    rate_limit_burst: int | None = Field(None, description="None: the server's default")
    rotated_from: str | None = None


class ApiKeyCreated(ApiModel):
    key_id: str
    client_id: str
    name: str
    scopes: list[str]
    api_key: str = Field(description="Shown only here")
    created_at: UTCTime
    expires_at: UTCTime | None = None
    rate_limit_per_second: float | None = None
    rate_limit_burst: int | None = None
    rotated_from: str | None = None
    old_key_expires_at: UTCTime | None = Field(None, description="After a rotation: when the old key stops working")


class ApiKeyList(ApiModel):
    api_keys: list[ApiKeyOut]


class RegistrationTokenCreate(RequestModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    expires_at: UTCTime | None = None
    max_uses: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = Field(None, description="None: unlimited")


class RegistrationTokenOut(ApiModel):
    token_id: str
    name: str
    created_at: UTCTime
    expires_at: UTCTime | None
    max_uses: int | None
    uses: int
    revoked_at: UTCTime | None


class RegistrationTokenCreated(RegistrationTokenOut):
    token: str = Field(description="Shown only here")


class RegistrationTokenList(ApiModel):
    registration_tokens: list[RegistrationTokenOut]
