"""Field types shared by several domains' request and response models."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, StringConstraints
from pydantic_core import PydanticSerializationError, to_json

from ains.core.clock import utc_text

AGENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{3,64}$"
CAPABILITY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_.-]{1,64}$"

AgentId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
ClientId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
Capability = Annotated[str, StringConstraints(pattern=CAPABILITY_PATTERN)]


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Times always leave the API as ISO 8601 UTC ending in Z.
UTCTime = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(utc_text, return_type=str),
]


class ApiModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RequestModel(BaseModel):
    """Request bodies: unknown fields are ignored, known ones are checked strictly."""

    model_config = ConfigDict(extra="ignore")


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON in UTF-8, the measure of SPEC's size limits (`max_input_bytes`,
    `max_metadata_bytes`). pydantic-core writes what `json.dumps(separators=(",", ":"), ensure_ascii=False)`
    writes, several times faster, but for floats below 1e-4 (`1e-7`, not `1e-07`); json.dumps measures what
    pydantic-core refuses (a lone surrogate)."""
    try:
        return len(to_json(value, inf_nan_mode="constants"))
    except PydanticSerializationError:
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def bounded_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """`metadata` at most `max_metadata_bytes` serialised (SPEC 13), else 413 like an oversized `input_data`."""
    from ains.core.errors import PayloadTooLarge
    from ains.core.middleware import MAX_METADATA_BYTES

    limit = MAX_METADATA_BYTES.get()
    if json_size(value) > limit:
        raise PayloadTooLarge(f"metadata is larger than {limit} bytes")
    return value
