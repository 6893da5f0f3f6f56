"""Configuration: every setting is documented, and `.env.example` works as it is."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from infra.config import ROOT, Settings

ENV_EXAMPLE = ROOT / ".env.example"


def _documented() -> dict[str, str]:
    """Variable -> the comment line just above it in `.env.example`."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    found = {}
    for above, line in zip(lines, lines[1:], strict=False):
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]+)=", line)
        if match:
            found[match.group(1)] = above
    return found


def test_every_setting_is_in_env_example_with_a_comment() -> None:
    documented = _documented()
    names = [f.alias for f in Settings.model_fields.values() if f.alias]

    missing = [n for n in names if n not in documented]
    uncommented = [n for n in names if not documented.get(n, "#").startswith("#")]

    assert missing == []
    assert uncommented == []


def test_the_vendors_own_variable_names_are_used() -> None:
    names = {f.alias for f in Settings.model_fields.values()}

    assert {
        "DEEPSEEK_API_KEY",
        "DEEPSEEK_BASE_URL",
        "DASHSCOPE_API_KEY",
        "DASHSCOPE_HTTP_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "UPSTASH_VECTOR_REST_URL",
        "UPSTASH_VECTOR_REST_TOKEN",
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_API_BASE_URL",
        "TELEGRAM_WEBHOOK_SECRET",
        "SENTRY_DSN",
        "DIGEST_DB",
        "DATABASE_URL",
        "DIGEST_BUDGET_USD",
    } <= names


def test_env_example_copied_unchanged_gives_the_offline_defaults(
    tmp_path: Path,
) -> None:
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")

    settings = Settings(_env_file=tmp_path / ".env")

    assert settings.database_url is None
    assert settings.deepseek_api_key is None
    assert settings.telegram_bot_token is None
    assert settings.store_url.startswith("sqlite:///")
    assert settings.budget_usd == 50
