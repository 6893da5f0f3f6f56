"""Feedback rows as ranking reads them, the delivery ledger, and the default digest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot import feedback
from bot.digests import configured_sources
from bot.handlers import topics_keyboard
from bot.ledger import MAX_ATTEMPTS, DeliveryLedger
from bot.texts import TOPICS
from functions.models import Item
from functions.topics import TOPIC_KEYWORDS
from infra.readers import Reader, get_reader, save_reader
from tests.bot_factories import make_entry


def test_callback_data_fits_64_bytes_for_the_longest_story_id() -> None:
    story_id = "s" * 40

    data = [feedback.encode(action, story_id) for action in feedback._CODES]

    assert max(len(d.encode()) for d in data) <= 64
    assert [feedback.decode(d) for d in data] == [
        (action, story_id) for action in feedback._CODES
    ]


def test_callback_data_past_64_bytes_is_refused_and_gets_no_buttons() -> None:
    entry = make_entry(1)
    entry.story.id = "x" * 70

    with pytest.raises(ValueError):
        feedback.encode("more", entry.story.id)
    assert feedback.keyboard([entry], [entry.story.id], "en") is None


def test_a_story_without_topics_gets_no_mute_button() -> None:
    entry = make_entry(1, topics=())

    markup = feedback.keyboard([entry], ["s0001"], "en")

    [row] = markup.inline_keyboard
    assert [b.callback_data for b in row] == ["fb:m:s0001", "fb:l:s0001", "fb:r:s0001"]


def test_feedback_rows_keep_the_columns_ranking_reads(store) -> None:
    reader = save_reader(store, Reader(id="", chat_id="1"))
    entries = [make_entry(1, sources=("xinhua-en",)), make_entry(2)]
    feedback.remember_stories(store, reader.id, "e1", entries)

    single = feedback.record(store, reader.id, "s0001", "more")
    several = feedback.record(store, reader.id, "s0002", "less")

    assert single.new and several.new
    rows = feedback.reader_feedback(store, reader.id)
    assert set(rows[0]) >= {
        "reader_id", "story_id", "action", "topic", "source", "created_at",
    }  # fmt: skip
    # One outlet: named. Several: left empty, so ranking credits every member.
    assert [(r["action"], r["topic"], r["source"]) for r in rows] == [
        ("more", "economy", "xinhua-en"),
        ("less", "economy", None),
    ]
    assert several.outlets == ("reuters", "xinhua")


def test_feedback_on_an_unknown_story_is_kept_without_topic(store) -> None:
    reader = save_reader(store, Reader(id="", chat_id="2"))

    more = feedback.record(store, reader.id, "gone", "more")
    mute = feedback.record(store, reader.id, "gone", "mute")

    assert more.new and more.topic == "" and more.source is None
    assert not mute.new
    assert [r["action"] for r in feedback.reader_feedback(store, reader.id)] == ["more"]


def test_mute_adds_the_topic_once(store) -> None:
    reader = save_reader(store, Reader(id="", chat_id="3", muted_topics=["society"]))
    entries = [make_entry(1), make_entry(2)]  # both about the economy
    feedback.remember_stories(store, reader.id, "e1", entries)

    feedback.record(store, reader.id, "s0001", "mute")
    feedback.record(store, reader.id, "s0002", "mute")

    assert get_reader(store, chat_id=3).muted_topics == ["society", "economy"]


def test_unknown_action_is_a_programming_error(store) -> None:
    with pytest.raises(ValueError):
        feedback.record(store, "r", "s", "love")


def test_ledger_gives_up_after_max_attempts(store) -> None:
    ledger = DeliveryLedger(store)

    for _ in range(MAX_ATTEMPTS):
        assert ledger.claim("r1", "e1", 0, ["s1"]).claimed
        ledger.mark("r1", "e1", 0, "retry", error="Bad Gateway")
    final = ledger.claim("r1", "e1", 0, ["s1"])

    assert not final.claimed and final.status == "failed"
    assert ledger.counts("e1") == {"failed": 1}


def test_ledger_claim_is_taken_by_one_claimer_only(store) -> None:
    first = DeliveryLedger(store).claim("r1", "e1", 0, [])
    second = DeliveryLedger(store).claim("r1", "e1", 0, [])

    assert first.claimed
    # A part left "sending" (a crash) is claimed again on the next run.
    assert second.claimed and second.attempts == 2


def test_ledger_sent_part_is_never_claimed_again(store) -> None:
    ledger = DeliveryLedger(store)
    ledger.claim("r1", "e1", 0, [])
    ledger.mark("r1", "e1", 0, "sent", message_id="9")

    claim = ledger.claim("r1", "e1", 0, [])

    assert (claim.claimed, claim.status) == (False, "sent")
    assert ledger.latest_edition() == "e1"


def _item(
    n: int,
    source: str,
    *,
    lang: str = "en",
    hours_ago: float = 1,
    title: str | None = None,
    text: str | None = None,
) -> Item:
    return Item(
        source=source,
        url=f"https://{source}.example/{n}",
        title=title or f"Title {n} {lang}",
        text=text or f"First sentence {n}. Second sentence. Third sentence.",
        lang=lang,
        published=datetime.now(UTC) - timedelta(hours=hours_ago),
        id=f"item{n}",
        keys=[f"k{n}"],
        content_hash=f"h{n}",
        title_hash=f"t{n}",
    )


def test_missing_sources_file_means_no_sources(tmp_path) -> None:
    assert configured_sources(tmp_path / "absent.toml") == []


def test_every_canonical_topic_has_a_label_and_a_button() -> None:
    markup = topics_keyboard(Reader(id="r", chat_id="1"))
    data = [b.callback_data for row in markup.inline_keyboard for b in row]

    assert set(TOPICS) == set(TOPIC_KEYWORDS)
    assert data[:-1] == [f"tp:{key}" for key in TOPICS] and data[-1] == "tp:done"
    assert max(len(d.encode()) for d in data) <= 64
