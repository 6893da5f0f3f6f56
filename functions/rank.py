"""Ranking per reader: what this reader should read today, and nothing twice.

A story's score mixes topic relevance, weights learned from the reader's
own feedback (decaying with time), coverage, freshness, importance and the
weight of its sources. A diversity pass (maximal marginal relevance) keeps
one event from filling a digest. Stories already delivered to the reader
are left out, unless new facts have revised them since (then they come
back once, as updates; more copies of known facts are not news). Below
an absolute score floor nothing is sent: a slow day makes a shorter
digest, and a day with nothing gives a note.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from functions.extractive import base_lang
from functions.models import DigestEntry, Item, Source, SourceLink, Story, Summary
from functions.summarize import latest_topics
from functions.topics import fold, tokens, topic_relevance
from infra import db
from infra.config import Settings
from infra.readers import Reader
from infra.store import Store, as_utc

_LOGGER = logging.getLogger(__name__)

# What one tap is worth before decay; a report of inaccuracy weighs on the source.
ACTION_WEIGHTS = {"more": 1.0, "less": -1.0, "report": -0.5}
# How the parts of a score are mixed (they sum to 1; learned weights can be negative).
SCORE_WEIGHTS = {
    "relevance": 0.35,
    "learned": 0.20,
    "coverage": 0.10,
    "freshness": 0.15,
    "importance": 0.15,
    "source": 0.05,
}
# Relevance given to every story when the reader named no topics.
NO_TOPICS_RELEVANCE = 0.5
# Coverage saturates: six independent sources is as strong as it gets.
FULL_COVERAGE = 6
# A candidate this similar to one already chosen is the same event retold.
SAME_EVENT_SIMILARITY = 0.6
# A muted topic this relevant to a story keeps the story out.
MUTE_RELEVANCE = 0.7
# Parts that reached the reader; "sending" may have, before a crash: not repeated.
DELIVERED = frozenset({"sent", "sending"})

QUIET_DAY_NOTES = {
    "en": "Nothing today met the bar for your digest. We will be back when "
    "there is news worth your time.",
    "zh": "今天没有值得推送给您的新闻。有值得一读的消息时我们再见。",
}

Relevance = Callable[[str, Story, Summary], float]
EmbedTexts = Callable[[list[str]], Awaitable[Sequence[Sequence[float]]]]


@dataclass
class Profile:
    """A reader with the weights their feedback has taught (each in -1..1)."""

    reader: Reader
    topic_weights: dict[str, float] = field(default_factory=dict)
    source_weights: dict[str, float] = field(default_factory=dict)
    muted: set[str] = field(default_factory=set)


def load_profile(
    store: Store, reader: Reader, *, now: datetime, half_life_days: float
) -> Profile:
    """The reader's topics and mutes, plus learned weights that halve every
    `half_life_days` since the tap."""
    table = db.feedback
    with store.begin() as conn:
        rows = conn.execute(select(table).where(table.c.reader_id == reader.id)).all()

    need_topics = [r.story_id for r in rows if not r.topic]
    need_sources = [r.story_id for r in rows if not r.source]
    story_topics = latest_topics(store, need_topics)
    story_sources = _member_sources(store, need_sources)

    raw_topics: dict[str, float] = defaultdict(float)
    raw_sources: dict[str, float] = defaultdict(float)
    muted = {fold(t).strip() for t in reader.muted_topics}
    for row in rows:
        if row.action == "mute":
            if row.topic:
                muted.add(fold(row.topic).strip())
            continue
        weight = ACTION_WEIGHTS.get(row.action)
        if weight is None:
            continue
        tapped = as_utc(row.created_at) or now
        age_days = max(0.0, (now - tapped).total_seconds() / 86400)
        decayed = weight * 0.5 ** (age_days / max(half_life_days, 0.1))
        if row.action != "report":
            topics = [row.topic] if row.topic else story_topics.get(row.story_id, [])
            for topic in topics:
                raw_topics[fold(topic).strip()] += decayed
        sources = [row.source] if row.source else story_sources.get(row.story_id, [])
        for source in sources:
            raw_sources[source] += decayed

    return Profile(
        reader=reader,
        topic_weights={t: math.tanh(v) for t, v in raw_topics.items()},
        source_weights={s: math.tanh(v) for s, v in raw_sources.items()},
        muted=muted,
    )


def _member_sources(store: Store, story_ids: list[str]) -> dict[str, list[str]]:
    if not story_ids:
        return {}
    members, items = db.story_members, db.items
    query = (
        select(members.c.story_id, items.c.source)
        .join(items, items.c.id == members.c.item_id)
        .where(members.c.story_id.in_(story_ids))
    )
    found: dict[str, set[str]] = defaultdict(set)
    with store.begin() as conn:
        for row in conn.execute(query):
            found[row.story_id].add(row.source)
    return {k: sorted(v) for k, v in found.items()}


def delivered_story_ids(
    store: Store, reader_id: str, *, edition: str | None = None
) -> dict[str, datetime]:
    """Stories sent to this reader in other editions, with when they were sent."""
    table = db.deliveries
    query = select(table.c.story_ids, table.c.updated_at, table.c.status).where(
        table.c.reader_id == reader_id
    )
    if edition is not None:
        query = query.where(table.c.edition != edition)
    sent: dict[str, datetime] = {}
    with store.begin() as conn:
        for row in conn.execute(query):
            if row.status not in DELIVERED:
                continue
            when = as_utc(row.updated_at)
            for story_id in row.story_ids or []:
                if when is not None and (story_id not in sent or when > sent[story_id]):
                    sent[story_id] = when
    return sent


def _revised_since(story: Story, sent_at: datetime) -> bool:
    """A delivered story is news again only once new facts have revised it."""
    revised = as_utc(story.revised_at)
    return story.updated_with_new_facts and revised is not None and revised > sent_at


@dataclass
class Candidate:
    story: Story
    summary: Summary
    score: float
    bag: set[str]
    parts: dict[str, float]
    is_update: bool = False


def score_story(
    profile: Profile,
    story: Story,
    summary: Summary,
    *,
    now: datetime,
    settings: Settings,
    source_weights: dict[str, float] | None = None,
    relevance: Relevance | None = None,
) -> Candidate | None:
    """The story's score for this reader, or None if a muted topic rules it out."""
    bag = tokens(
        " ".join([story.title, summary.headline, summary.text, *summary.topics])
    )
    labels = {fold(t).strip() for t in summary.topics}
    for muted in profile.muted:
        if (
            muted in labels
            or topic_relevance(muted, summary.topics, bag) >= MUTE_RELEVANCE
        ):
            return None

    reader_topics = [t for t in profile.reader.topics if t.strip()]
    if reader_topics:
        rel = max(topic_relevance(t, summary.topics, bag) for t in reader_topics)
        if relevance is not None:
            rel = max(rel, *(relevance(t, story, summary) for t in reader_topics))
    else:
        rel = NO_TOPICS_RELEVANCE

    topic_learned = [profile.topic_weights.get(t, 0.0) for t in labels]
    source_learned = [profile.source_weights.get(s, 0.0) for s in set(story.sources)]
    learned = 0.6 * _mean(topic_learned) + 0.4 * _mean(source_learned)

    coverage = min(1.0, math.log1p(story.coverage) / math.log1p(FULL_COVERAGE))
    age_hours = max(0.0, (now - story.last_seen).total_seconds() / 3600)
    freshness = 0.5 ** (age_hours / max(settings.rank_freshness_hours, 0.1))
    configured = source_weights or {}
    source = _mean([configured.get(s, 1.0) for s in set(story.sources)] or [1.0])
    source = max(-0.5, min(0.5, source - 1.0))

    parts = {
        "relevance": rel,
        "learned": learned,
        "coverage": coverage,
        "freshness": freshness,
        "importance": summary.importance,
        "source": source,
    }
    score = sum(SCORE_WEIGHTS[k] * v for k, v in parts.items())
    return Candidate(story=story, summary=summary, score=score, bag=bag, parts=parts)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _similarity(a: set[str], b: set[str]) -> float:
    return len(a & b) / (len(a | b) or 1)


def diversify(
    candidates: list[Candidate], size: int, diversity: float
) -> list[Candidate]:
    """Maximal marginal relevance: each pick trades score against sameness."""
    pool = sorted(candidates, key=lambda c: (-c.score, c.story.id))
    chosen: list[Candidate] = []
    while pool and len(chosen) < size:
        best, best_value = None, -math.inf
        for candidate in pool:
            overlap = max(
                (_similarity(candidate.bag, c.bag) for c in chosen), default=0
            )
            if overlap >= SAME_EVENT_SIMILARITY:
                continue
            value = (1 - diversity) * candidate.score - diversity * overlap
            if value > best_value:
                best, best_value = candidate, value
        if best is None:
            break
        chosen.append(best)
        pool.remove(best)
    return chosen


def _summary_for(
    summaries: dict[tuple[str, str], Summary], story_id: str, lang: str
) -> Summary | None:
    """The reader's language, else any language the story was summarized in."""
    own = summaries.get((story_id, lang))
    if own is not None:
        return own
    others = sorted((k[1], s) for k, s in summaries.items() if k[0] == story_id)
    return others[0][1] if others else None


def _links(
    story: Story, items: dict[str, Item], sources: dict[str, Source]
) -> list[SourceLink]:
    """One link per outlet, its earliest article, labelled with its ownership."""
    firsts: dict[str, Item] = {}
    for item_id in story.member_ids:
        item = items.get(item_id)
        if item is None:
            continue
        known = firsts.get(item.source)
        if known is None or item.published < known.published:
            firsts[item.source] = item
    links: list[SourceLink] = []
    for name, item in sorted(firsts.items(), key=lambda kv: kv[1].published):
        source = sources.get(name)
        links.append(
            SourceLink(
                name=source.display_name if source else name,
                url=item.url,
                ownership=source.ownership if source else "unknown",
            )
        )
    return links


def rank_for_reader(
    reader: Reader,
    stories: list[Story],
    summaries: dict[tuple[str, str], Summary],
    *,
    store: Store,
    now: datetime,
    settings: Settings,
    edition: str | None = None,
    sources: dict[str, Source] | None = None,
    relevance: Relevance | None = None,
) -> list[DigestEntry]:
    """This reader's digest entries, best first; empty on a day with nothing.

    `edition` keeps a re-run of the same edition from excluding its own
    stories; `sources` supplies weights, labels and ownership; `relevance`
    is vector similarity of a topic to a story, where the index offers it.
    """
    lang = base_lang(reader.lang)
    profile = load_profile(
        store, reader, now=now, half_life_days=settings.feedback_half_life_days
    )
    sent = delivered_story_ids(store, reader.id, edition=edition)
    configured = sources or {}
    weights = {name: s.weight for name, s in configured.items()}

    candidates: list[Candidate] = []
    skipped = {"delivered": 0, "muted": 0, "no-summary": 0, "below-floor": 0}
    for story in stories:
        if story.id in sent and not _revised_since(story, sent[story.id]):
            skipped["delivered"] += 1
            continue
        summary = _summary_for(summaries, story.id, lang)
        if summary is None or not summary.sentences:
            skipped["no-summary"] += 1
            continue
        candidate = score_story(
            profile,
            story,
            summary,
            now=now,
            settings=settings,
            source_weights=weights,
            relevance=relevance,
        )
        if candidate is None:
            skipped["muted"] += 1
            continue
        if candidate.score < settings.rank_score_floor:
            skipped["below-floor"] += 1
            continue
        candidate.is_update = story.id in sent
        candidates.append(candidate)

    chosen = diversify(candidates, max(1, reader.digest_size), settings.rank_diversity)
    member_ids = [i for c in chosen for i in c.story.member_ids]
    items = {i.id: i for i in store.get_items(member_ids)}
    entries = [
        DigestEntry(
            story=c.story,
            summary=c.summary,
            links=_links(c.story, items, configured),
            score=round(c.score, 4),
            is_update=c.is_update,
        )
        for c in chosen
    ]
    _LOGGER.info(
        "ranked %d stories for reader %s: %d chosen, skipped %s",
        len(stories),
        reader.id,
        len(entries),
        skipped,
    )
    return entries


async def vector_relevance(
    embed: EmbedTexts,
    topics: list[str],
    summaries: list[Summary],
    *,
    low: float = 0.2,
    high: float = 0.6,
) -> Relevance:
    """Topic relevance from an index's embeddings: cosine similarity of a
    reader topic and a story's summary, mapped from [low, high] to [0, 1].

    `embed` turns texts into vectors (the vector index's embedder); all
    texts are embedded in one call before ranking, which stays synchronous.
    """
    texts = list(dict.fromkeys(topics))
    keyed = {(s.story_id, s.lang): f"{s.headline}. {s.text}" for s in summaries}
    vectors = list(await embed(texts + list(keyed.values()))) if texts else []
    unit = [_unit(v) for v in vectors]
    by_topic = dict(zip(texts, unit[: len(texts)], strict=True))
    by_story = dict(zip(keyed, unit[len(texts) :], strict=True))

    def relevance(topic: str, story: Story, summary: Summary) -> float:
        a = by_topic.get(topic)
        b = by_story.get((story.id, summary.lang))
        if a is None or b is None:
            return 0.0
        cosine = sum(x * y for x, y in zip(a, b, strict=True))
        return max(0.0, min(1.0, (cosine - low) / (high - low)))

    return relevance


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def quiet_day_note(reader: Reader) -> str:
    """What a reader gets instead of an empty message on a day with nothing."""
    return QUIET_DAY_NOTES.get(base_lang(reader.lang), QUIET_DAY_NOTES["en"])
