"""`digest readers`, `digest bot --set-webhook` and `digest send`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from functions.cli import _register, cli
from functions.cluster import cluster_items
from functions.models import Item
from infra.config import get_settings
from infra.readers import get_reader, set_active
from infra.store import open_store
from infra.vector import LocalVectorIndex
from tests.fakes.telegram_api import TOKEN, FakeTelegram


@pytest.fixture
def run():
    _register()
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


def test_readers_add_list_remove(run) -> None:
    added = run(
        "readers",
        "add",
        "--chat-id",
        "42",
        "--lang",
        "zh",
        "--topics",
        "economy, technology",
    )
    updated = run("readers", "add", "--chat-id", "42", "--lang", "en")
    listed = run("readers", "list", "--json")
    removed = run("readers", "remove", "--chat-id", "42")
    missing = run("readers", "remove", "--chat-id", "42")

    assert added.exit_code == 0 and "saved" in added.output
    assert updated.exit_code == 0
    [reader] = json.loads(listed.output)
    assert (reader["chat_id"], reader["lang"]) == ("42", "en")
    assert reader["topics"] == ["economy", "technology"]
    assert removed.exit_code == 0
    assert missing.exit_code != 0 and "no reader with chat id 42" in missing.output


def test_readers_add_on_an_existing_reader_changes_only_what_is_given(run) -> None:
    from infra.readers import get_reader, save_reader, set_active
    from infra.store import open_store

    run("readers", "add", "--chat-id", "222", "--topics", "military")
    store = open_store()
    reader = get_reader(store, chat_id="222")
    reader.muted_topics, reader.delivery_hour = ["sports"], 20
    reader.timezone = "Europe/London"
    save_reader(store, reader)
    set_active(store, reader.id, False)

    result = run("readers", "add", "--chat-id", "222", "--digest-size", "4")

    after = get_reader(store, chat_id="222")
    assert "unsubscribed" in result.output
    assert after.digest_size == 4
    assert (after.topics, after.muted_topics) == (["military"], ["sports"])
    assert (after.delivery_hour, after.timezone, after.active) == (
        20,
        "Europe/London",
        False,
    )


def test_readers_add_rejects_a_chat_id_that_is_not_a_number(run) -> None:
    result = run("readers", "add", "--chat-id", "@someone")

    assert result.exit_code != 0
    assert "a chat id is a number" in result.output


def test_readers_list_in_text(run) -> None:
    assert "No readers yet" in run("readers", "list").output
    run("readers", "add", "--chat-id", "-100123", "--topics", "politics")

    assert "chat -100123  en  active  politics" in run("readers", "list").output


def test_set_webhook_registers_url_secret_and_commands(
    run, fake_tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", fake_tg.api_root)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "hook_secret")
    monkeypatch.setenv("TELEGRAM_ADMIN_CHAT_IDS", "7,8")
    get_settings.cache_clear()

    result = run("bot", "--set-webhook", "https://bot.example/telegram")

    assert result.exit_code == 0, result.output
    webhook = fake_tg.webhook
    assert webhook["url"] == "https://bot.example/telegram"
    assert webhook["secret_token"] == "hook_secret"
    assert json.loads(webhook["allowed_updates"]) == ["message", "callback_query"]
    assert len(fake_tg.commands) == 4  # default, Chinese, two admin chats
    assert TOKEN not in result.output


def test_set_webhook_without_a_secret_is_refused(
    run, fake_tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", fake_tg.api_root)
    get_settings.cache_clear()

    result = run("bot", "--set-webhook", "https://bot.example/telegram")

    assert result.exit_code != 0
    assert "TELEGRAM_WEBHOOK_SECRET is not set" in result.output
    assert fake_tg.webhook == {}


def test_bot_without_a_token_says_how_to_fix_it(run) -> None:
    result = run("bot")

    assert result.exit_code != 0
    assert "TELEGRAM_BOT_TOKEN is not set" in result.output


def test_send_prints_each_active_readers_digest_once(run) -> None:
    store = open_store()
    now = datetime.now(UTC)
    items = [
        Item(
            source="xinhua",
            url="https://x.example/1",
            title="Trade surplus grows & widens",
            text="The surplus grew. Exports rose.",
            lang="en",
            published=now,
            id="item1",
            keys=["k1"],
            content_hash="h1",
            title_hash="t1",
        )
    ]
    store.upsert_items(items)
    asyncio.run(cluster_items(store, LocalVectorIndex(store), items, now=now))
    run("readers", "add", "--chat-id", "11")
    run("readers", "add", "--chat-id", "12")
    run("readers", "add", "--chat-id", "13")
    set_active(store, get_reader(store, chat_id=13).id, False)

    first = run(
        "send", "--channel", "console", "--edition", "e1", "--preview", "p.html"
    )
    second = run("send", "--channel", "console", "--edition", "e1")

    assert first.exit_code == 0, first.output
    assert first.output.count("1. Trade surplus grows & widens") == 2
    assert "Extractive summary" in first.output
    assert "1. Trade" not in second.output
    assert "Trade surplus grows &amp; widens" in Path("p.html").read_text(
        encoding="utf-8"
    )
