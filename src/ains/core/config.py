"""Settings, read from `AINS_*` environment variables (SPEC 12)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AINS_", extra="ignore")

    data_dir: Path = Path("./.ains")
    database_url: str | None = None
    admin_key: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "ains:"
    # Each Redis call (cache, rate limits) gives up after this long and the request goes on without it.
    redis_timeout_seconds: float = Field(0.25, gt=0)
    cache_max_agents: int = Field(10_000, ge=1)
    cache_max_tasks: int = Field(100_000, ge=1)
    auto_migrate: bool = True

    max_input_bytes: int = Field(262144, gt=0)
    max_metadata_bytes: int = Field(16384, gt=0)  # largest serialised task `metadata` (SPEC 13): 413 beyond
    max_body_bytes: int = Field(33554432, gt=0)  # largest request body, counted as it arrives (SPEC 13): 413 beyond
    assign_lease_seconds: float = Field(60, gt=0)
    agent_stale_seconds: float = Field(90, gt=0)
    timeout_check_seconds: float = Field(5, gt=0)
    aging_interval_seconds: float = Field(60, gt=0)
    signature_window_seconds: float = Field(300, gt=0)

    retry_exponential_base_seconds: float = Field(2, ge=0)
    retry_linear_base_seconds: float = Field(5, ge=0)
    retry_fixed_seconds: float = Field(10, ge=0)
    retry_max_delay_seconds: float = Field(3600, ge=0)

    webhook_timeout_seconds: float = Field(5, gt=0)
    # Seconds before each retry of a delivery (SPEC 15): 8 attempts over about 27 hours, so a receiver
    # down for hours loses nothing. Past the list's end its last value repeats.
    webhook_retry_delays: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0], min_length=1
    )
    webhook_max_attempts: int = Field(8, ge=1)
    # When set, retry delays are base, 2×base, 4×base… instead of the list (tests and demos).
    webhook_backoff_base_seconds: float | None = Field(None, ge=0)
    webhook_max_in_flight: int = Field(16, ge=1)  # deliveries to one webhook at once, across all dispatchers
    webhook_disable_after: int = Field(20, ge=1)
    webhook_allow_private: bool = False
    webhook_dispatch_interval_seconds: float = Field(1.0, gt=0)
    webhook_concurrency: int = Field(64, ge=1)  # deliveries in flight per dispatcher process, all webhooks

    agent_cache_ttl_seconds: float = Field(300, ge=0)
    task_cache_ttl_seconds: float = Field(30, ge=0)
    # With Redis: the longest a cache entry outlives an invalidation that failed (SPEC 16).
    cache_stale_bound_seconds: float = Field(5, gt=0)
    run_background: bool = True

    # SPEC 18: each key's token bucket (per-key overrides at creation), the cap on a client's non-final tasks,
    # and who may register agents (`open`, or `token`: only with a registration token).
    rate_limit_per_second: float = Field(1000, gt=0)
    rate_limit_burst: int = Field(2000, ge=1)
    max_pending_tasks_per_client: int = Field(1_000_000, ge=1)
    agent_registration: Literal["open", "token"] = "open"

    log_level: str = "INFO"
    # Log lines: `text` for people, `json` one object a line, `auto` text on a terminal and JSON otherwise.
    log_format: Literal["auto", "text", "json"] = "auto"
    # The longest a lost wake-up can cost: a waiting claim looks again this often, and the link between
    # processes (PostgreSQL LISTEN) is checked this often.
    wakeup_fallback_seconds: float = Field(1.0, gt=0)

    @field_validator("webhook_retry_delays", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # AINS_WEBHOOK_RETRY_DELAYS=5,300,1800 (a JSON list is accepted too).
        if isinstance(value, str):
            text = value.strip().removeprefix("[").removesuffix("]")
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("webhook_retry_delays")
    @classmethod
    def _not_negative(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays are seconds, 0 or more")
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ains.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
