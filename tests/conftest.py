"""Shared fixtures: an isolated environment and a fresh store per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.config import get_settings
from infra.store import Store
from tests.feedserver import FeedServer, serve

_VENDOR_VARS = (
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
    "DATABASE_URL",
    "DIGEST_DB",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's keys, .env file or state file."""
    for name in list(os.environ):
        if name in _VENDOR_VARS or name.startswith("DIGEST_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_DB", str(tmp_path / "digest.db"))
    monkeypatch.setenv("DIGEST_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MODAL_AUTOMOUNT", "0")
    # The multilingual model embeds ~10 articles a second: tests that want it
    # ask for it; the rest cluster with the instant lexical vectors.
    monkeypatch.setenv("DIGEST_EMBEDDER", "lexical")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A programmable feed server on 127.0.0.1 (see tests/feedserver.py)."""
    with serve() as server:
        yield server


@pytest.fixture
def fast_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fetch settings that keep failure tests short: small timeouts, tiny backoff."""
    monkeypatch.setenv("DIGEST_FETCH_TIMEOUT_S", "1")
    monkeypatch.setenv("DIGEST_FETCH_DEADLINE_S", "10")
    monkeypatch.setenv("DIGEST_FETCH_RETRIES", "2")
    monkeypatch.setenv("DIGEST_FETCH_BACKOFF_S", "0.01")
    monkeypatch.setenv("DIGEST_FETCH_BACKOFF_MAX_S", "0.05")
    get_settings.cache_clear()
