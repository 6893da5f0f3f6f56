"""Commands and buttons: updates go into real PTB, replies reach the fake API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import insert
from telegram import Update
from telegram.ext import Application

from bot.feedback import reader_feedback
from bot.handlers import (
    BotDeps,
    build_application,
    default_deps,
    set_commands,
    status_text,
)
from bot.limits import RateLimiter
from functions.models import Source
from infra import db
from infra.config import Settings, get_settings
from infra.readers import Reader, get_reader, save_reader
from infra.store import utcnow
from tests.bot_factories import make_digest, make_entry
from tests.fakes.telegram_api import TOKEN, FakeTelegram

ADMIN = 900
HOSTILE = 'Beijing <b>bold</b> & <script>alert("x")</script>'


@pytest.fixture
def settings(fake_tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", fake_tg.api_root)
    monkeypatch.setenv("TELEGRAM_ADMIN_CHAT_IDS", str(ADMIN))
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def deps(settings: Settings, store) -> BotDeps:
    def digest_for(reader: Reader):
        entries = [
            make_entry(1, headline=HOSTILE),
            make_entry(2, topics=("politics",), sources=("xinhua",)),
        ]
        return make_digest(entries, reader_id=reader.id, lang=reader.lang)

    sources = [
        Source(name="xinhua", url="https://x.example/rss", lang="zh", label="Xinhua",
               ownership="state media"),
        Source(name="evil", url="https://e.example/rss", label="<i>Evil</i> & Co"),
    ]  # fmt: skip
    return BotDeps(
        store=store,
        settings=settings,
        build_digest_for=digest_for,
        list_sources=lambda: sources,
        month_cost=lambda: 3.2,
        limiter=RateLimiter(rate=25, chat_interval=0.09),
    )


@pytest.fixture
async def app(settings: Settings, deps: BotDeps) -> AsyncIterator[Application]:
    application = build_application(settings, deps)
    async with application:
        yield application


async def feed(app: Application, update: dict) -> None:
    await app.process_update(Update.de_json(update, app.bot))


def subscribe(store, chat_id: int, **fields) -> Reader:
    return save_reader(store, Reader(id="", chat_id=str(chat_id), **fields))


async def test_start_subscribes_and_asks_for_the_language(
    app: Application, fake_tg: FakeTelegram, store
) -> None:
    await feed(app, fake_tg.message_update(501, "/start"))

    reader = get_reader(store, chat_id=501)
    assert reader is not None and reader.active and reader.lang == "en"
    [message] = fake_tg.messages_to(501)
    assert "Welcome to China to Watch" in message.visible
    [row] = message.reply_markup["inline_keyboard"]
    assert [b["callback_data"] for b in row] == ["lang:en", "lang:zh"]


async def test_start_from_a_chinese_client_answers_in_chinese(
    app: Application, fake_tg: FakeTelegram, store
) -> None:
    await feed(app, fake_tg.message_update(502, "/start", language_code="zh-hans"))

    assert get_reader(store, chat_id=502).lang == "zh"
    assert "欢迎使用" in fake_tg.messages_to(502)[0].visible


async def test_language_then_topics_then_done(
    app: Application, fake_tg: FakeTelegram, store
) -> None:
    await feed(app, fake_tg.message_update(503, "/start"))

    await feed(app, fake_tg.callback_update(503, "lang:zh"))
    await feed(app, fake_tg.callback_update(503, "tp:economy"))
    await feed(app, fake_tg.callback_update(503, "tp:technology"))
    await feed(app, fake_tg.callback_update(503, "tp:economy"))
    await feed(app, fake_tg.callback_update(503, "tp:done"))

    reader = get_reader(store, chat_id=503)
    assert (reader.lang, reader.topics) == ("zh", ["technology"])
    assert len(fake_tg.answers) == 5
    pick, *toggles, done = fake_tg.edits
    assert "选择你关注的话题" in pick["visible"]
    labels = [
        b["text"] for row in toggles[1]["reply_markup"]["inline_keyboard"] for b in row
    ]
    assert "✓ 经济" in labels and "✓ 科技" in labels
    assert "已保存。你的话题：科技" in done["visible"]
    assert len(fake_tg.messages_to(503)) == 1  # every step edits the same message


async def test_topics_shows_and_changes_the_profile(
    app: Application, fake_tg: FakeTelegram, store
) -> None:
    subscribe(store, 504, topics=["diplomacy"], muted_topics=["military"])

    await feed(app, fake_tg.message_update(504, "/topics"))
    await feed(app, fake_tg.callback_update(504, "tp:military"))

    [message] = fake_tg.messages_to(504)
    assert "Your topics: Foreign affairs" in message.visible
    assert "Muted: Military" in message.visible
    reader = get_reader(store, chat_id=504)
    assert reader.topics == ["diplomacy", "military"] and reader.muted_topics == []


async def test_topics_needs_a_subscription(
    app: Application, fake_tg: FakeTelegram
) -> None:
    await feed(app, fake_tg.message_update(505, "/topics"))

    assert "Send /start to subscribe" in fake_tg.messages_to(505)[0].visible


async def test_digest_sends_the_current_digest_escaped_with_buttons(
    app: Application, fake_tg: FakeTelegram, store
) -> None:
    subscribe(store, 506)
    update = fake_tg.message_update(506, "/digest")

    await feed(app, update)
    await feed(app, update)  # Telegram re-sent it: nothing goes out twice

    [message] = fake_tg.messages_to(506)
    assert HOSTILE in message.visible and "<script>" not in message.text
    assert message.reply_markup["inline_keyboard"][1][2]["text"] == "🔇 Politics"
    assert len(fake_tg.calls("sendChatAction")) == 2


async def test_stop_then_start_brings_the_reader_back(
    app: Application, fake_tg: FakeTelegram, store
) -> None:
    subscribe(store, 507)

    await feed(app, fake_tg.message_update(507, "/stop"))
    stopped = get_reader(store, chat_id=507).active
    await feed(app, fake_tg.message_update(507, "/digest"))
    await feed(app, fake_tg.message_update(507, "/start"))

    assert stopped is False
    assert get_reader(store, chat_id=507).active is True
    bye, refused, back = (m.visible for m in fake_tg.messages_to(507))
    assert "unsubscribed" in bye
    assert "not subscribed" in refused
    assert "Welcome back" in back


async def test_sources_lists_outlets_with_ownership_escaped(
    app: Application, fake_tg: FakeTelegram, store
) -> None:
    store.save_source_state("evil", consecutive_failures=4, last_error="timeout")

    await feed(app, fake_tg.message_update(508, "/sources"))

    [message] = fake_tg.messages_to(508)
    assert "• Xinhua: state media, zh" in message.visible
    assert "• <i>Evil</i> & Co: ?, en ⚠️" in message.visible


async def test_help_and_unknown_commands_explain_the_bot(
    app: Application, fake_tg: FakeTelegram
) -> None:
    await feed(app, fake_tg.message_update(509, "/help"))
    await feed(app, fake_tg.message_update(509, "/nonsense"))

    first, second = fake_tg.messages_to(509)
    assert "/digest: your digest now" in first.visible
    assert second.visible == first.visible


async def test_status_is_for_admins_only(
    app: Application, fake_tg: FakeTelegram, store
) -> None:
    subscribe(store, 510)
    store.save_source_state("xinhua", consecutive_failures=5, last_error="HTTP 503")
    store.save_run("run1", "digest", "ok", {}, started_at=utcnow())

    await feed(app, fake_tg.message_update(510, "/status"))
    await feed(app, fake_tg.message_update(ADMIN, "/status"))

    assert "for admins" in fake_tg.messages_to(510)[0].visible
    [report] = fake_tg.messages_to(ADMIN)
    assert "Readers: 1 active of 1" in report.visible
    assert "digest: ok" in report.visible
    assert "⚠️ xinhua: 5 failures, HTTP 503" in report.visible
    assert "Spend this month: $3.20 of $50.00 (6%)" in report.visible


async def test_broadcast_reaches_each_active_reader_once(
    app: Application, fake_tg: FakeTelegram, store
) -> None:
    for chat_id in (601, 602, 603):
        subscribe(store, chat_id)
    subscribe(store, 604, active=False)
    update = fake_tg.message_update(ADMIN, "/broadcast Test <b>one</b> & two")

    await feed(app, update)
    await feed(app, update)
    await feed(app, fake_tg.message_update(601, "/broadcast hijack"))

    for chat_id in (601, 602, 603):
        texts = [m.visible for m in fake_tg.messages_to(chat_id)]
        assert texts[0] == "Test <b>one</b> & two"
    assert fake_tg.messages_to(604) == []
    assert "for admins" in fake_tg.messages_to(601)[-1].visible
    admin = [m.visible for m in fake_tg.messages_to(ADMIN)]
    assert admin[0] == "Broadcasting to 3 readers…"
    assert admin[1] == "Broadcast finished: 3 sent, 0 not delivered."


async def test_feedback_taps_are_stored_once_and_answered(
    app: Application, fake_tg: FakeTelegram, store
) -> None:
    reader = subscribe(store, 701)
    await feed(app, fake_tg.message_update(701, "/digest"))

    for data in ("fb:m:s0001", "fb:m:s0001", "fb:l:s0001", "fb:x:s0002", "fb:x:s0002"):
        await feed(app, fake_tg.callback_update(701, data))

    answers = [a.get("text") for a in fake_tg.answers]
    assert answers == [
        "👍 Noted: more like this.",
        "Already noted.",
        "👎 Noted: less like this.",
        "🔇 Muted topic: Politics.",
        "Already noted.",
    ]
    rows = [
        (r["story_id"], r["action"], r["topic"], r["source"])
        for r in reader_feedback(store, reader.id)
    ]
    assert sorted(rows) == [
        ("s0001", "less", "economy", None),
        ("s0002", "mute", "politics", "xinhua"),
    ]
    assert get_reader(store, chat_id=701).muted_topics == ["politics"]


async def test_report_reaches_the_admin_chat_once(
    app: Application, fake_tg: FakeTelegram, store
) -> None:
    reader = subscribe(store, 702)
    await feed(app, fake_tg.message_update(702, "/digest"))

    await feed(app, fake_tg.callback_update(702, "fb:r:s0001"))
    await asyncio.sleep(0)
    await feed(app, fake_tg.callback_update(702, "fb:r:s0001"))

    [note] = fake_tg.messages_to(ADMIN)
    assert "Inaccuracy report" in note.visible
    assert HOSTILE in note.visible and "<script>" not in note.text
    assert "outlets: reuters, xinhua" in note.visible
    assert [a.get("text") for a in fake_tg.answers] == [
        "⚠️ Thanks: reported to the editors.",
        "Already noted.",
    ]
    assert [r["action"] for r in reader_feedback(store, reader.id)] == ["report"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("fb:z:s0001", id="unknown-action"),
        pytest.param("fb:m:", id="no-story"),
        pytest.param("fb", id="truncated"),
    ],
)
async def test_malformed_feedback_is_answered_and_ignored(
    app: Application, fake_tg: FakeTelegram, store, data: str
) -> None:
    reader = subscribe(store, 703)
    await feed(app, fake_tg.callback_update(703, data))

    assert fake_tg.answers[0]["text"] == "This button is no longer valid."
    assert reader_feedback(store, reader.id) == []


async def test_commands_are_registered_for_readers_and_admins(
    app: Application, fake_tg: FakeTelegram
) -> None:
    await set_commands(app.bot, {ADMIN})

    commands = fake_tg.commands
    default = commands['{"language_code": "", "type": "default"}']
    chinese = commands['{"language_code": "zh", "type": "default"}']
    admin = commands[f'{{"chat_id": {ADMIN}, "language_code": "", "type": "chat"}}']
    assert [c["command"] for c in default] == [
        "digest", "topics", "sources", "stop", "start", "help",
    ]  # fmt: skip
    assert chinese[0] == {"command": "digest", "description": "立即获取简报"}
    assert [c["command"] for c in admin][-2:] == ["status", "broadcast"]


async def test_polling_runs_the_same_handlers(
    settings: Settings, deps: BotDeps, fake_tg: FakeTelegram, store
) -> None:
    application = build_application(settings, deps, polling=True)
    fake_tg.push_update(fake_tg.message_update(801, "/start"))

    async with application:
        await application.updater.start_polling(poll_interval=0.0, timeout=1)
        await application.start()
        for _ in range(200):
            if fake_tg.messages_to(801):
                break
            await asyncio.sleep(0.02)
        await application.updater.stop()
        await application.stop()

    assert "Welcome" in fake_tg.messages_to(801)[0].visible
    assert get_reader(store, chat_id=801).active


def test_default_spend_is_the_llm_ledgers_month_to_date(
    settings: Settings, store
) -> None:
    with store.begin() as conn:
        for at, usd in ((utcnow(), 1.25), (utcnow() - timedelta(days=40), 9.0)):
            conn.execute(
                insert(db.llm_calls).values(
                    at=at, stage="summarize", provider="deepseek", model="m",
                    outcome="ok", tier="standard", cost_usd=usd,
                )
            )  # fmt: skip

    deps = default_deps(settings, store)

    assert deps.month_cost() == pytest.approx(1.25)
    assert "Spend</b> this month: $1.25 of $50.00" in status_text(deps)
