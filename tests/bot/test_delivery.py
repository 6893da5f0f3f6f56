"""Delivery through the real python-telegram-bot to the fake Bot API."""

from __future__ import annotations

import asyncio
import io
from collections import Counter

import pytest
from telegram import Bot

from bot.channels import (
    ConsoleChannel,
    TelegramChannel,
    broadcast,
    deliver_digests,
    to_plain_text,
)
from bot.ledger import DeliveryLedger
from bot.limits import RateLimiter
from infra.config import get_settings
from infra.readers import get_reader
from tests.bot_factories import make_digest, make_entry
from tests.fakes.telegram_api import TOKEN, FakeTelegram

HOSTILE = 'Beijing <b>bold</b> & <script>alert("x")</script>'


def fast_channel(bot: Bot, store, **options) -> TelegramChannel:
    """A channel paced for the test fake: 40 ms per message, 90 ms per chat."""
    limiter = RateLimiter(rate=25, chat_interval=0.09)
    options.setdefault("backoff", 0.01)
    return TelegramChannel(bot, store, limiter=limiter, **options)


async def test_digest_arrives_as_escaped_html_with_feedback_buttons(
    fake_tg: FakeTelegram, tg_bot: Bot, store, add_reader
) -> None:
    reader = add_reader(1001)
    digest = make_digest([make_entry(1, headline=HOSTILE), make_entry(2)])

    result = await fast_channel(tg_bot, store).deliver(reader, digest)

    assert result.complete and result.sent == 1
    [message] = fake_tg.messages_to(1001)
    assert message.parse_mode == "HTML"
    assert message.link_preview_options == {"is_disabled": True}
    assert HOSTILE in message.visible
    assert "<script>" not in message.text
    rows = message.reply_markup["inline_keyboard"]
    assert [b["callback_data"] for b in rows[0]] == [
        "fb:m:s0001",
        "fb:l:s0001",
        "fb:x:s0001",
        "fb:r:s0001",
    ]
    assert rows[1][0]["text"] == "2 👍"
    assert rows[0][2]["text"] == "🔇 Economy"


async def test_a_second_delivery_of_an_edition_sends_nothing(
    fake_tg: FakeTelegram, tg_bot: Bot, store, add_reader
) -> None:
    reader = add_reader(1002)
    digest = make_digest()
    channel = fast_channel(tg_bot, store)

    first = await channel.deliver(reader, digest)
    second = await channel.deliver(reader, digest)

    assert (first.sent, first.skipped) == (1, 0)
    assert (second.sent, second.skipped, second.status) == (0, 1, "sent")
    assert len(fake_tg.messages_to(1002)) == 1
    [row] = DeliveryLedger(store).parts(reader.id, digest.edition)
    assert row["status"] == "sent" and row["message_id"] == "1"
    assert row["story_ids"] == ["s0001", "s0002", "s0003"]


async def test_long_digest_goes_out_in_order_without_breaking_chat_limits(
    fake_factory, store, add_reader
) -> None:
    fake = fake_factory(chat_interval=0.04)
    reader = add_reader(1003)
    text = "Exports fell for a third month as demand weakened. " * 30
    digest = make_digest([make_entry(n, text=text) for n in range(1, 9)])

    async with Bot(fake.token, base_url=fake.base_url) as bot:
        result = await fast_channel(bot, store).deliver(reader, digest)

    messages = fake.messages_to(1003)
    assert result.complete and result.sent == len(messages) > 1
    assert fake.rate_violations == 0
    assert [m.text.split("</i>")[0] for m in messages] == [
        f"<i>({n}/{len(messages)})" for n in range(1, len(messages) + 1)
    ]
    buttons = [
        row[0]["callback_data"]
        for m in messages
        for row in m.reply_markup["inline_keyboard"]
    ]
    assert buttons == [f"fb:m:s{n:04d}" for n in range(1, 9)]


async def test_flood_reply_is_waited_out_and_sent_once(
    fake_tg: FakeTelegram, tg_bot: Bot, store, add_reader
) -> None:
    reader = add_reader(1004)
    fake_tg.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    loop = asyncio.get_running_loop()

    started = loop.time()
    result = await fast_channel(tg_bot, store).deliver(reader, make_digest())
    waited = loop.time() - started

    assert result.complete and result.flood_waits == 1
    assert len(fake_tg.messages_to(1004)) == 1
    assert len(fake_tg.calls("sendMessage")) == 2
    assert waited >= 1.0  # the retry came after retry_after, not before


async def test_reader_who_blocked_the_bot_is_marked_inactive(
    fake_tg: FakeTelegram, tg_bot: Bot, store, add_reader
) -> None:
    reader = add_reader(1005)
    fake_tg.block(1005)
    channel = fast_channel(tg_bot, store)

    result = await channel.deliver(reader, make_digest())
    again = await channel.deliver(reader, make_digest())

    assert result.status == "blocked"
    assert "blocked" in (result.error or "")
    assert get_reader(store, chat_id=1005).active is False
    assert again.status == "blocked"
    assert len(fake_tg.calls("sendMessage")) == 1


async def test_unparsable_html_is_resent_as_plain_text_and_reported(
    fake_tg: FakeTelegram, tg_bot: Bot, store, add_reader
) -> None:
    reader = add_reader(1006)
    fake_tg.fail(
        "sendMessage", 400, "Bad Request: can't parse entities: unsupported start tag"
    )

    result = await fast_channel(tg_bot, store).deliver(reader, make_digest())

    assert result.complete and result.plain_fallbacks == 1
    [message] = fake_tg.messages_to(1006)
    assert message.parse_mode is None
    assert "1. Story 1" in message.text and "<b>" not in message.text
    assert "Xinhua <https://example.com/x/1> (state media)" in message.text
    [row] = DeliveryLedger(store).parts(reader.id, "2025-05-12")
    assert row["status"] == "sent"
    assert row["error"].startswith("sent as plain text: Can't parse entities")


async def test_network_failure_is_left_for_the_next_run(
    fake_tg: FakeTelegram, tg_bot: Bot, store, add_reader
) -> None:
    reader = add_reader(1007)
    fake_tg.fail("sendMessage", 502, "Bad Gateway", times=2)
    channel = fast_channel(tg_bot, store, network_retries=1)

    first = await channel.deliver(reader, make_digest())
    second = await channel.deliver(reader, make_digest())

    assert first.status == "retry" and first.sent == 0
    assert "Bad Gateway" in (first.error or "")
    assert second.complete and second.sent == 1
    assert len(fake_tg.messages_to(1007)) == 1
    [row] = DeliveryLedger(store).parts(reader.id, "2025-05-12")
    assert (row["status"], row["attempts"]) == ("sent", 2)


async def test_other_bad_request_fails_that_reader_only(
    fake_tg: FakeTelegram, tg_bot: Bot, store, add_reader
) -> None:
    reader = add_reader(1008)
    fake_tg.fail("sendMessage", 400, "Bad Request: message is too long")

    result = await fast_channel(tg_bot, store).deliver(reader, make_digest())

    assert result.status == "failed"
    assert get_reader(store, chat_id=1008).active is True


async def test_migrated_group_is_followed_to_its_new_chat(
    fake_tg: FakeTelegram, tg_bot: Bot, store, add_reader
) -> None:
    reader = add_reader(-1009)
    fake_tg.fail(
        "sendMessage",
        400,
        "Bad Request: group chat was upgraded to a supergroup chat",
        parameters={"migrate_to_chat_id": -1001009},
    )

    result = await fast_channel(tg_bot, store).deliver(reader, make_digest())

    assert result.complete
    assert len(fake_tg.messages_to(-1001009)) == 1
    assert get_reader(store, reader_id=reader.id).chat_id == "-1001009"


async def test_crashed_broadcast_resumes_without_loss_or_duplicates(
    fake_factory, store, add_reader
) -> None:
    fake = fake_factory(global_rate=1000, chat_interval=0.0)
    readers = [add_reader(2000 + n) for n in range(30)]
    jobs = [(r, make_digest(reader_id=r.id)) for r in readers]

    async with Bot(fake.token, base_url=fake.base_url) as bot:
        channel = TelegramChannel(bot, store, limiter=RateLimiter(rate=150))
        task = asyncio.create_task(broadcast(channel, jobs, concurrency=8))
        while len(fake.messages) < 10:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        delivered_before = len(fake.messages)
        report = await broadcast(channel, jobs, concurrency=8)

    assert 10 <= delivered_before < 30
    per_chat = Counter(m.chat_id for m in fake.messages)
    assert per_chat == Counter({str(2000 + n): 1 for n in range(30)})
    assert report.statuses == {"sent": 30}
    assert sum(r.skipped for r in report.results) == delivered_before
    assert DeliveryLedger(store).counts("2025-05-12") == {"sent": 30}


async def test_broadcast_pace_stays_within_the_fake_limits(
    fake_factory, store, add_reader
) -> None:
    fake = fake_factory(global_rate=100, chat_interval=0.3)
    readers = [add_reader(3000 + n) for n in range(40)]
    text = "Exports fell for a third month as demand weakened. " * 30
    digest_of = {
        r.id: make_digest(
            [make_entry(n, text=text) for n in range(1, 6)], reader_id=r.id
        )
        for r in readers[:3]
    }
    jobs = [(r, digest_of.get(r.id) or make_digest(reader_id=r.id)) for r in readers]

    async with Bot(fake.token, base_url=fake.base_url) as bot:
        channel = TelegramChannel(
            bot, store, limiter=RateLimiter(rate=90, chat_interval=0.36)
        )
        report = await broadcast(channel, jobs, concurrency=16)

    assert fake.rate_violations == 0
    assert report.statuses == {"sent": 40}
    assert len(fake.messages) == report.messages_sent > 40


async def test_console_channel_prints_the_same_story_set(store, add_reader) -> None:
    reader = add_reader(1010)
    out = io.StringIO()
    digest = make_digest([make_entry(1, headline=HOSTILE), make_entry(2)])
    channel = ConsoleChannel(store, stream=out)

    first = await channel.deliver(reader, digest)
    second = await channel.deliver(reader, digest)

    assert first.complete and second.skipped == 1
    printed = out.getvalue()
    assert printed.count("1. " + HOSTILE) == 1
    assert "2. Story 2" in printed
    assert [
        r["story_ids"] for r in DeliveryLedger(store).parts(reader.id, "2025-05-12")
    ] == [["s0001", "s0002"]]


def test_plain_text_keeps_link_addresses() -> None:
    html = (
        '<b>1. A &amp; B</b>\nSources: <a href="https://x.example/?a=1&amp;b=2">X</a>'
    )

    assert to_plain_text(html) == "1. A & B\nSources: X <https://x.example/?a=1&b=2>"


async def test_deliver_digests_picks_telegram_when_a_token_is_set(
    fake_tg: FakeTelegram, store, add_reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = add_reader(1011)
    jobs = [(reader, make_digest(reader_id=reader.id))]
    out = io.StringIO()
    console = await deliver_digests(get_settings(), store, jobs, stream=out)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", fake_tg.api_root)
    get_settings.cache_clear()
    jobs = [(reader, make_digest(reader_id=reader.id, edition="e2"))]

    telegram = await deliver_digests(get_settings(), store, jobs)

    assert console.messages_sent == 1 and "1. Story 1" in out.getvalue()
    assert telegram.messages_sent == 1
    assert "1. Story 1" in fake_tg.messages_to(1011)[0].visible


async def test_a_rebuilt_digest_never_mixes_into_an_edition_already_started(
    fake_factory, store, add_reader
) -> None:
    """Red-team finding: part 2 of a rebuilt digest after part 1 of the old one."""
    fake = fake_factory(global_rate=1000, chat_interval=0.0)
    reader = add_reader(4100)
    long_text = "Exports fell for a third month as demand weakened. " * 40
    first = make_digest([make_entry(1)], reader_id=reader.id)
    rebuilt = make_digest(
        [make_entry(n, text=long_text) for n in range(1, 9)], reader_id=reader.id
    )

    async with Bot(fake.token, base_url=fake.base_url) as bot:
        channel = TelegramChannel(bot, store, limiter=RateLimiter(rate=150))
        await channel.deliver(reader, first)
        again = await channel.deliver(reader, rebuilt)

    assert len(channel.render(rebuilt)) > 1
    assert len(fake.messages) == 1
    assert again.parts == 1 and again.skipped == 1 and again.sent == 0
