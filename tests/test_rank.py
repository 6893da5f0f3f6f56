"""Ranking per reader: relevance, feedback, diversity, exclusions, floor (issue 5)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert

from functions.models import Source, Story, Summary
from functions.rank import (
    load_profile,
    quiet_day_note,
    rank_for_reader,
    vector_relevance,
)
from functions.summarize import save_summary
from infra import db
from infra.config import Settings
from infra.readers import Reader
from tests.editorial_fakes import T0, item, story

NOW = T0 + timedelta(hours=6)
SETTINGS = Settings()


def _summary(
    story_id: str, headline: str, text: str, topics: list[str], importance: float = 0.6
) -> Summary:
    return Summary(
        story_id=story_id,
        lang="en",
        headline=headline,
        sentences=[text],
        topics=topics,
        importance=importance,
        method="llm",
    )


# Six stories of one morning: (id, source, headline, sentence, topics, importance)
DAY = [
    (
        "trade",
        "Harbor Wire",
        "Exports rise 8%",
        "China's exports rose 8% in February as tariffs eased.",
        ["trade", "economy"],
        0.7,
    ),
    (
        "chips",
        "Pacific Ledger",
        "New chip plant opens",
        "A semiconductor plant opened in Wuxi with state funding.",
        ["technology"],
        0.6,
    ),
    (
        "quake",
        "Harbor Wire",
        "Earthquake in Yunnan",
        "A magnitude 5.1 earthquake struck Yunnan; no deaths were reported.",
        ["environment"],
        0.6,
    ),
    (
        "rail",
        "Coastline Daily",
        "High-speed line extended",
        "A new high-speed railway section opened in Guizhou.",
        ["transport"],
        0.5,
    ),
    (
        "navy",
        "Pacific Ledger",
        "Navy drills near Taiwan",
        "The navy held drills in the Taiwan Strait on Monday.",
        ["military", "taiwan"],
        0.7,
    ),
    (
        "bank",
        "Coastline Daily",
        "Central bank holds rates",
        "The central bank kept its loan prime rate unchanged.",
        ["finance", "economy"],
        0.6,
    ),
]


@pytest.fixture
def day(store):
    """The morning's stories and summaries, with their articles stored."""
    stories: list[Story] = []
    summaries: dict[tuple[str, str], Summary] = {}
    articles = []
    for n, (sid, source, headline, text, topics, importance) in enumerate(DAY):
        article = item(f"{sid}-1", text, title=headline, source=source, hours=n * 0.1)
        articles.append(article)
        stories.append(story(sid, article, hours=n * 0.1))
        summaries[(sid, "en")] = _summary(sid, headline, text, topics, importance)
    store.upsert_items(articles)
    return stories, summaries


def _ids(entries) -> list[str]:
    return [e.story.id for e in entries]


def _rank(store, reader, stories, summaries, **kwargs):
    kwargs.setdefault("now", NOW)
    kwargs.setdefault("settings", SETTINGS)
    return rank_for_reader(reader, stories, summaries, store=store, **kwargs)


def _tap(store, reader_id, story_id, action, topic="", source=None, days_ago=0.0):
    with store.begin() as conn:
        conn.execute(
            insert(db.feedback).values(
                reader_id=reader_id,
                story_id=story_id,
                action=action,
                topic=topic,
                source=source,
                created_at=NOW - timedelta(days=days_ago),
            )
        )


def _deliver(store, reader_id, edition, story_ids, status="sent", when=NOW):
    with store.begin() as conn:
        conn.execute(
            insert(db.deliveries).values(
                reader_id=reader_id,
                edition=edition,
                part=0,
                status=status,
                story_ids=story_ids,
                updated_at=when,
            )
        )


# Relevance and diversity ------------------------------------------------------


def test_reader_topics_come_first(store, day) -> None:
    stories, summaries = day
    reader = Reader(id="r1", chat_id="1", topics=["trade", "semiconductors"])

    ranked = _ids(_rank(store, reader, stories, summaries))

    assert ranked[:2] == ["trade", "chips"]


def test_topic_matches_a_story_in_another_language(store, day) -> None:
    stories, summaries = day
    zh_article = item(
        "zh-1", "海关总署称，出口增长，关税下调。", lang="zh", source="东方日报"
    )
    zh_story = story("zh-trade", zh_article)
    summaries[("zh-trade", "zh")] = Summary(
        story_id="zh-trade",
        lang="zh",
        headline="出口增长",
        sentences=["出口增长，关税下调。"],
    )
    reader = Reader(id="r1", chat_id="1", lang="en", topics=["trade"])

    ranked = _ids(_rank(store, reader, [*stories, zh_story], summaries))

    assert "zh-trade" in ranked[:2]


def test_one_event_cannot_fill_the_digest(store, day) -> None:
    stories, summaries = day
    for n in range(4):
        sid = f"trade-copy-{n}"
        copy = item(sid, "China's exports rose 8% in February.", source=f"Outlet {n}")
        stories.append(story(sid, copy))
        summaries[(sid, "en")] = _summary(
            sid,
            "Exports rise 8%",
            "China's exports rose 8% in February as tariffs eased.",
            ["trade", "economy"],
            0.9,
        )
    reader = Reader(id="r1", chat_id="1", digest_size=4)

    ranked = _ids(_rank(store, reader, stories, summaries))

    assert len(ranked) == 4
    assert sum(1 for sid in ranked if sid.startswith("trade")) == 1


def test_digest_size_and_links_with_ownership(store, day) -> None:
    stories, summaries = day
    reader = Reader(id="r1", chat_id="1", digest_size=2)
    sources = {
        "Harbor Wire": Source(name="Harbor Wire", url="x", ownership="wire service")
    }

    entries = _rank(store, reader, stories, summaries, sources=sources)

    assert len(entries) == 2
    trade = next(
        e
        for e in _rank(store, reader, stories, summaries, sources=sources)
        if e.story.id == "trade"
    )
    assert [(link.name, link.ownership) for link in trade.links] == [
        ("Harbor Wire", "wire service")
    ]
    assert trade.links[0].url == "https://news.example/trade-1"


# Exclusions, floor and quiet days ---------------------------------------------------


def test_stories_already_delivered_are_excluded(store, day) -> None:
    stories, summaries = day
    reader = Reader(id="r1", chat_id="1")
    _deliver(store, "r1", "2026-03-01", ["trade", "chips"])
    _deliver(store, "r1", "2026-03-01-b", ["quake"], status="failed")
    _deliver(store, "someone-else", "2026-03-01", ["rail"])

    ranked = _ids(_rank(store, reader, stories, summaries, edition="2026-03-02"))
    rerun = _ids(_rank(store, reader, stories, summaries, edition="2026-03-01"))

    assert "trade" not in ranked and "chips" not in ranked
    assert "quake" in ranked and "rail" in ranked
    assert "trade" in rerun


def test_delivered_story_comes_back_only_when_new_facts_revised_it(store, day) -> None:
    stories, summaries = day
    reader = Reader(id="r1", chat_id="1")
    sent_at = NOW - timedelta(hours=5)
    _deliver(store, "r1", "2026-03-01", ["trade", "chips", "quake"], when=sent_at)
    by_id = {s.id: s for s in stories}
    # New facts after the delivery; new facts before it; more copies only.
    by_id["trade"].revision, by_id["trade"].revised_at = 2, NOW - timedelta(hours=1)
    by_id["chips"].revision, by_id["chips"].revised_at = 2, NOW - timedelta(hours=9)
    by_id["quake"].member_ids.append("quake-copy")

    entries = {e.story.id: e for e in _rank(store, reader, stories, summaries)}

    assert entries["trade"].is_update
    assert "chips" not in entries and "quake" not in entries
    assert not entries["rail"].is_update


def test_slow_day_gives_a_shorter_digest_not_filler(store, day) -> None:
    stories, summaries = day
    for key in summaries:
        summaries[key].importance = 0.1
    reader = Reader(id="r1", chat_id="1", topics=["trade"], digest_size=8)

    ranked = _ids(
        _rank(store, reader, stories, summaries, now=NOW + timedelta(hours=30))
    )

    assert ranked == ["trade"]


def test_nothing_worth_sending_gives_a_note_not_an_empty_digest(store, day) -> None:
    stories, summaries = day
    reader = Reader(id="r1", chat_id="1", topics=["football"])

    entries = _rank(store, reader, stories, summaries, now=NOW + timedelta(days=5))

    assert entries == []
    assert quiet_day_note(reader).startswith("Nothing today")
    assert quiet_day_note(Reader(id="r2", chat_id="2", lang="zh-CN")).startswith("今天")


# Feedback --------------------------------------------------------------------------


def test_thumbs_up_raises_its_topics_for_that_reader_only(store, day) -> None:
    stories, summaries = day
    alice = Reader(id="alice", chat_id="1", digest_size=6)
    bob = Reader(id="bob", chat_id="2", digest_size=6)
    before_alice = _ids(_rank(store, alice, stories, summaries))
    before_bob = _ids(_rank(store, bob, stories, summaries))

    _tap(store, "alice", "old-rail-story", "more", topic="transport")

    after_alice = _ids(_rank(store, alice, stories, summaries))
    assert after_alice.index("rail") < before_alice.index("rail")
    assert after_alice[0] == "rail"
    assert _ids(_rank(store, bob, stories, summaries)) == before_bob


def test_thumbs_down_lowers_the_story_topics_and_source(store, day) -> None:
    stories, summaries = day
    save_summary(store, summaries[("navy", "en")], "k", "v")
    reader = Reader(id="alice", chat_id="1", digest_size=6)
    before = _ids(_rank(store, reader, stories, summaries))

    _tap(store, "alice", "navy", "less", source="Pacific Ledger")

    profile = load_profile(store, reader, now=NOW, half_life_days=14)
    assert profile.topic_weights["military"] < 0
    assert profile.topic_weights["taiwan"] < 0
    assert profile.source_weights["Pacific Ledger"] < 0
    after = _ids(_rank(store, reader, stories, summaries))
    assert "navy" in before and "navy" not in after
    assert after.index("chips") > before.index("chips")


def test_less_like_this_on_a_topic_mutes_it(store, day) -> None:
    stories, summaries = day
    reader = Reader(id="alice", chat_id="1", digest_size=6)

    _tap(store, "alice", "bank", "mute", topic="economy")

    ranked = _ids(_rank(store, reader, stories, summaries))
    assert "trade" not in ranked and "bank" not in ranked
    assert len(ranked) == 4


def test_muted_topics_from_the_profile_are_respected(store, day) -> None:
    stories, summaries = day
    reader = Reader(id="alice", chat_id="1", muted_topics=["Taiwan"])

    assert "navy" not in _ids(_rank(store, reader, stories, summaries))


def test_feedback_without_topic_or_source_uses_the_story_own(store, day) -> None:
    """A tap may name only the story: its stored topics and member sources count."""
    stories, summaries = day
    save_summary(store, summaries[("chips", "en")], "k", "v")
    with store.begin() as conn:
        conn.execute(insert(db.story_members), [_member_row("chips-1", "chips")])
    reader = Reader(id="alice", chat_id="1")

    _tap(store, "alice", "chips", "more")

    profile = load_profile(store, reader, now=NOW, half_life_days=14)
    assert profile.topic_weights == {"technology": pytest.approx(0.7616, abs=1e-3)}
    assert profile.source_weights == {"Pacific Ledger": pytest.approx(0.7616, abs=1e-3)}


def _member_row(item_id: str, story_id: str) -> dict[str, object]:
    """A story_members row with every required column filled, whatever the schema."""
    blanks = {str: "", int: 0, float: 0.0, bool: False, list: [], bytes: b""}
    row: dict[str, object] = {"item_id": item_id, "story_id": story_id}
    for column in db.story_members.c:
        if column.name in row or column.nullable:
            continue
        try:
            python_type = column.type.python_type
        except NotImplementedError:
            python_type = list
        row[column.name] = (
            NOW if python_type is datetime else blanks.get(python_type, "")
        )
    return row


def test_feedback_fades_with_time(store) -> None:
    reader = Reader(id="alice", chat_id="1")
    _tap(store, "alice", "s1", "more", topic="trade")
    _tap(store, "alice", "s2", "more", topic="energy", days_ago=28)

    profile = load_profile(store, reader, now=NOW, half_life_days=14)

    assert profile.topic_weights["trade"] == pytest.approx(0.7616, abs=1e-3)
    assert profile.topic_weights["energy"] == pytest.approx(0.2449, abs=1e-3)


async def test_vector_similarity_adds_relevance_the_words_miss(store, day) -> None:
    """ "seismic activity" shares no word with the quake story; an embedder
    that places them together lets the reader's topic find it."""
    stories, summaries = day
    reader = Reader(id="r1", chat_id="1", topics=["seismic activity"], digest_size=1)

    async def embed(texts: list[str]) -> list[list[float]]:
        return [
            [1.0, 0.0] if ("seismic" in t or "quake" in t) else [0.0, 1.0]
            for t in texts
        ]

    relevance = await vector_relevance(embed, reader.topics, list(summaries.values()))

    lexical = _ids(_rank(store, reader, stories, summaries))
    semantic = _ids(_rank(store, reader, stories, summaries, relevance=relevance))
    assert lexical != ["quake"]
    assert semantic == ["quake"]
