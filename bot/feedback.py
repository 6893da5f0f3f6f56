"""Feedback taps: the buttons under each story, and what a tap stores.

A button carries `fb:<action>:<story id>`, at most 5 + 40 bytes, well inside
Telegram's 64. The story's topic and source are looked up in
`delivered_stories`, written when the story was sent, rather than packed into
the button. Ranking reads the `feedback` table: `topic` is the story's first
canonical topic, `source` the source name (as in `items.source`) when one
outlet alone carried the story. A reader's latest verdict on a story wins,
so "more" replaces "less" and the other way round.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import texts
from functions.models import DigestEntry
from infra import db
from infra.store import Store, utcnow

_LOGGER = logging.getLogger(__name__)

CALLBACK_LIMIT = 64
PREFIX = "fb"
ACTIONS = {"m": "more", "l": "less", "x": "mute", "r": "report"}
_CODES = {action: code for code, action in ACTIONS.items()}
_OPPOSITE = {"more": "less", "less": "more"}


@dataclass(frozen=True)
class StoryRef:
    """What a reader was sent of one story, as far as feedback needs it."""

    story_id: str
    edition: str
    headline: str
    topics: list[str]
    sources: list[str]

    @property
    def topic(self) -> str:
        return self.topics[0] if self.topics else ""

    @property
    def source(self) -> str | None:
        """The outlet a tap is about: the only one, or None when several carried it.

        Ranking credits every member's outlet of a story whose tap names none.
        """
        return self.sources[0] if len(self.sources) == 1 else None


@dataclass(frozen=True)
class FeedbackOutcome:
    action: str
    story_id: str
    new: bool
    topic: str = ""
    source: str | None = None
    headline: str = ""
    outlets: tuple[str, ...] = ()


def encode(action: str, story_id: str) -> str:
    """Callback data for a feedback button; ValueError past 64 bytes."""
    data = f"{PREFIX}:{_CODES[action]}:{story_id}"
    if len(data.encode()) > CALLBACK_LIMIT:
        raise ValueError(f"callback data for story {story_id!r} exceeds 64 bytes")
    return data


def decode(data: str | None) -> tuple[str, str] | None:
    """(action, story id) from callback data, or None if it is not ours."""
    parts = (data or "").split(":", 2)
    if len(parts) != 3 or parts[0] != PREFIX or parts[1] not in ACTIONS:
        return None
    if not parts[2]:
        return None
    return ACTIONS[parts[1]], parts[2]


def keyboard(
    entries: list[DigestEntry], story_ids: Iterable[str], lang: str
) -> InlineKeyboardMarkup | None:
    """One row of feedback buttons per story of a message, numbered as rendered."""
    wanted = set(story_ids)
    rows = []
    for number, entry in enumerate(entries, start=1):
        story_id = entry.story.id
        if story_id not in wanted:
            continue
        try:
            row = [
                InlineKeyboardButton(
                    f"{number} {texts.text(lang, 'btn_more')}",
                    callback_data=encode("more", story_id),
                ),
                InlineKeyboardButton(
                    f"{number} {texts.text(lang, 'btn_less')}",
                    callback_data=encode("less", story_id),
                ),
            ]
            topics = entry.summary.topics
            if topics:
                label = texts.topic_label(topics[0], lang)[:24]
                row.append(
                    InlineKeyboardButton(
                        texts.text(lang, "btn_mute", topic=label),
                        callback_data=encode("mute", story_id),
                    )
                )
            row.append(
                InlineKeyboardButton(
                    f"{number} {texts.text(lang, 'btn_report')}",
                    callback_data=encode("report", story_id),
                )
            )
        except ValueError:
            _LOGGER.warning("no feedback buttons for story %s: id too long", story_id)
            continue
        rows.append(row)
    return InlineKeyboardMarkup(rows) if rows else None


def remember_stories(
    store: Store, reader_id: str, edition: str, entries: Iterable[DigestEntry]
) -> None:
    """Record what the reader is being sent, so their taps can be resolved."""
    now = utcnow()
    table = db.delivered_stories
    with store.begin() as conn:
        for entry in entries:
            values: dict[str, Any] = dict(
                edition=edition,
                headline=entry.summary.headline or entry.story.title,
                topics=list(entry.summary.topics),
                sources=sorted(set(entry.story.sources)),
                delivered_at=now,
            )
            key = (table.c.reader_id == reader_id, table.c.story_id == entry.story.id)
            known = conn.execute(select(table.c.story_id).where(*key)).first()
            if known:
                conn.execute(update(table).where(*key).values(**values))
            else:
                conn.execute(
                    insert(table).values(
                        reader_id=reader_id, story_id=entry.story.id, **values
                    )
                )


def story_ref(store: Store, reader_id: str, story_id: str) -> StoryRef | None:
    table = db.delivered_stories
    with store.begin() as conn:
        row = conn.execute(
            select(table)
            .where(table.c.reader_id == reader_id)
            .where(table.c.story_id == story_id)
        ).first()
    if row is None:
        return None
    return StoryRef(
        story_id=row.story_id,
        edition=row.edition,
        headline=row.headline,
        topics=list(row.topics or []),
        sources=list(row.sources or []),
    )


def record(store: Store, reader_id: str, story_id: str, action: str) -> FeedbackOutcome:
    """Store one tap; a repeated tap finds its row and changes nothing."""
    if action not in _OPPOSITE and action not in ("mute", "report"):
        raise ValueError(f"unknown feedback action {action!r}")
    ref = story_ref(store, reader_id, story_id)
    topic = ref.topic if ref else ""

    def outcome(new: bool) -> FeedbackOutcome:
        return FeedbackOutcome(
            action=action,
            story_id=story_id,
            new=new,
            topic=topic,
            source=ref.source if ref else None,
            headline=ref.headline if ref else "",
            outlets=tuple(ref.sources) if ref else (),
        )

    if action == "mute" and not topic:
        return outcome(False)

    table = db.feedback
    try:
        with store.begin() as conn:
            mine = (table.c.reader_id == reader_id, table.c.story_id == story_id)
            known = conn.execute(
                select(table.c.action).where(*mine, table.c.action == action)
            ).first()
            if known:
                return outcome(False)
            if action in _OPPOSITE:
                conn.execute(
                    delete(table).where(*mine, table.c.action == _OPPOSITE[action])
                )
            conn.execute(
                insert(table).values(
                    reader_id=reader_id,
                    story_id=story_id,
                    action=action,
                    topic=topic,
                    source=ref.source if ref else None,
                    created_at=utcnow(),
                )
            )
            if action == "mute":
                _mute_topic(conn, reader_id, topic)
    except IntegrityError:
        # A concurrent identical tap inserted the same row first.
        return outcome(False)
    _LOGGER.info("feedback %s on story %s from reader %s", action, story_id, reader_id)
    return outcome(True)


def _mute_topic(conn: Any, reader_id: str, topic: str) -> None:
    row = conn.execute(
        select(db.readers.c.muted_topics).where(db.readers.c.id == reader_id)
    ).first()
    if row is None:
        return
    muted = list(row.muted_topics or [])
    if topic not in muted:
        conn.execute(
            update(db.readers)
            .where(db.readers.c.id == reader_id)
            .values(muted_topics=[*muted, topic], updated_at=utcnow())
        )


def reader_feedback(store: Store, reader_id: str) -> list[dict[str, Any]]:
    """Every stored tap of one reader, oldest first."""
    table = db.feedback
    query = (
        select(table)
        .where(table.c.reader_id == reader_id)
        .order_by(table.c.created_at, table.c.story_id, table.c.action)
    )
    with store.begin() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
