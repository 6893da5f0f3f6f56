"""Shared fixtures: an isolated environment and a fresh store per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from infra.config import Settings, get_settings
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
    "SENTRY_ENVIRONMENT",
    "SENTRY_RELEASE",
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


# --- ops: the store contract on both engines ---------------------------------

ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the test PostgreSQL server (`.ci/run` starts one)."""
    raw = os.environ.get("TEST_DATABASE_URL")
    if not raw:
        pytest.skip("TEST_DATABASE_URL is not set (`.ci/run` starts a server)")
    return Settings.model_validate({"DATABASE_URL": raw}).store_url


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return

    base = request.getfixturevalue("postgres_url")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def any_store(store_url: str) -> Iterator[Store]:
    """A fresh store on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""
    s = Store(store_url)
    yield s
    s.close()
