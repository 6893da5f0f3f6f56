"""Configuration from the environment and an optional `.env` file.

Every vendor endpoint is a setting, under the vendor's own variable name
where it has one, so the real SDKs can be aimed at local fakes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCES = ROOT / "sources.toml"


class Settings(BaseSettings):
    """All knobs of China to Watch; names match `.env.example`."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # State
    digest_db: Path = Field(default=Path("digest.db"), alias="DIGEST_DB")
    database_url: SecretStr | None = Field(default=None, alias="DATABASE_URL")
    digest_out: Path = Field(default=Path("out"), alias="DIGEST_OUT")
    digest_sources: Path = Field(default=DEFAULT_SOURCES, alias="DIGEST_SOURCES")

    # Collection
    fetch_timeout_s: float = Field(default=15.0, alias="DIGEST_FETCH_TIMEOUT_S")
    fetch_deadline_s: float = Field(default=60.0, alias="DIGEST_FETCH_DEADLINE_S")
    fetch_max_bytes: int = Field(default=5_000_000, alias="DIGEST_FETCH_MAX_BYTES")
    fetch_retries: int = Field(default=2, alias="DIGEST_FETCH_RETRIES")
    fetch_concurrency: int = Field(default=16, alias="DIGEST_FETCH_CONCURRENCY")

    # Chat models
    deepseek_api_key: SecretStr | None = Field(default=None, alias="DEEPSEEK_API_KEY")
    deepseek_base_url: str = Field(
        default="https://api.deepseek.com", alias="DEEPSEEK_BASE_URL"
    )
    dashscope_api_key: SecretStr | None = Field(default=None, alias="DASHSCOPE_API_KEY")
    dashscope_http_base_url: str = Field(
        default="https://dashscope-intl.aliyuncs.com/api/v1",
        alias="DASHSCOPE_HTTP_BASE_URL",
    )
    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str = Field(
        default="https://api.openai.com/v1", alias="OPENAI_BASE_URL"
    )
    llm_order: str = Field(default="deepseek,qwen,openai", alias="DIGEST_LLM_ORDER")
    budget_usd: float = Field(default=50.0, alias="DIGEST_BUDGET_USD")

    # Vector index
    upstash_vector_rest_url: str | None = Field(
        default=None, alias="UPSTASH_VECTOR_REST_URL"
    )
    upstash_vector_rest_token: SecretStr | None = Field(
        default=None, alias="UPSTASH_VECTOR_REST_TOKEN"
    )

    # Telegram
    telegram_bot_token: SecretStr | None = Field(
        default=None, alias="TELEGRAM_BOT_TOKEN"
    )
    telegram_api_base_url: str = Field(
        default="https://api.telegram.org", alias="TELEGRAM_API_BASE_URL"
    )
    telegram_webhook_secret: SecretStr | None = Field(
        default=None, alias="TELEGRAM_WEBHOOK_SECRET"
    )
    telegram_admin_chat_ids: str = Field(
        default="", validation_alias=AliasChoices("TELEGRAM_ADMIN_CHAT_IDS")
    )

    # Telemetry
    sentry_dsn: SecretStr | None = Field(default=None, alias="SENTRY_DSN")
    sentry_environment: str = Field(default="local", alias="SENTRY_ENVIRONMENT")
    sentry_release: str | None = Field(default=None, alias="SENTRY_RELEASE")
    # Jobs with a Sentry cron monitor; the free plan has one, so only "digest".
    sentry_monitors: str = Field(default="digest", alias="DIGEST_SENTRY_MONITORS")
    log_level: str = Field(default="INFO", alias="DIGEST_LOG_LEVEL")

    # Operations: alerts to the admin chat and the scheduled jobs' fan-out
    alert_window_hours: float = Field(default=6.0, alias="DIGEST_ALERT_WINDOW_HOURS")
    delivery_batch_size: int = Field(default=50, alias="DIGEST_DELIVERY_BATCH")
    delivery_concurrency: int = Field(default=4, alias="DIGEST_DELIVERY_CONCURRENCY")
    delivery_catchup_hours: int = Field(
        default=3, alias="DIGEST_DELIVERY_CATCHUP_HOURS"
    )

    # Digest
    digest_size: int = Field(default=8, alias="DIGEST_SIZE")
    cluster_window_hours: int = Field(default=72, alias="DIGEST_CLUSTER_WINDOW_HOURS")

    @property
    def monitored_jobs(self) -> set[str]:
        return {x.strip() for x in self.sentry_monitors.split(",") if x.strip()}

    @property
    def admin_chat_ids(self) -> list[int]:
        return [int(x) for x in self.telegram_admin_chat_ids.split(",") if x.strip()]

    @property
    def store_url(self) -> str:
        """SQLAlchemy URL of the state store: PostgreSQL if set, else SQLite."""
        if self.database_url is not None:
            url = self.database_url.get_secret_value()
            if url.startswith("postgres://"):
                url = "postgresql://" + url.removeprefix("postgres://")
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            return url
        return f"sqlite:///{self.digest_db}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
