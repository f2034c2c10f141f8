"""Settings, read from `AINS_*` environment variables (SPEC 12)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AINS_", extra="ignore")

    data_dir: Path = Path("./.ains")
    database_url: str | None = None
    admin_key: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "ains:"
    cache_max_agents: int = Field(10_000, ge=1)
    cache_max_tasks: int = Field(100_000, ge=1)
    auto_migrate: bool = True

    max_input_bytes: int = Field(262144, gt=0)
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
    webhook_max_attempts: int = Field(3, ge=1)
    webhook_backoff_base_seconds: float = Field(1, ge=0)
    webhook_disable_after: int = Field(20, ge=1)
    webhook_allow_private: bool = False
    webhook_dispatch_interval_seconds: float = Field(1.0, gt=0)
    webhook_concurrency: int = Field(64, ge=1)

    agent_cache_ttl_seconds: float = Field(300, ge=0)
    task_cache_ttl_seconds: float = Field(30, ge=0)
    run_background: bool = True

    log_level: str = "INFO"
    # The longest a lost wake-up can cost: a waiting claim looks again this often, and the link between
    # processes (PostgreSQL LISTEN) is checked this often.
    wakeup_fallback_seconds: float = Field(1.0, gt=0)

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ains.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
