"""Request and response bodies of the key endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, StringConstraints

from ains.auth.principal import CLIENT_SCOPES
from ains.core.schemas import ApiModel, ClientId, RequestModel, UTCTime

Scope = Literal[CLIENT_SCOPES]  # type: ignore[valid-type]


class ApiKeyCreate(RequestModel):
    client_id: ClientId
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(CLIENT_SCOPES))] | None = Field(
        None, description="Defaults to all: tasks:read, tasks:write, webhooks"
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


class ApiKeyCreated(ApiModel):
    key_id: str
    client_id: str
    name: str
    scopes: list[str]
    api_key: str = Field(description="Shown only here")
    created_at: UTCTime


class ApiKeyList(ApiModel):
    api_keys: list[ApiKeyOut]
