"""Default providers for the bot: a digest built from stored data, and the sources.

The pipeline plugs its own `build_digest_for(reader)` into the bot; until it
does, `/digest` shows the most covered recent stories (or, before anything
is clustered, the newest items) as extractive summaries, so the bot works
on a fresh checkout with nothing but collected items.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from functions.cluster import recent_stories
from functions.extractive import extractive_summary
from functions.models import (
    Digest,
    DigestEntry,
    Item,
    Source,
    SourceLink,
    Story,
)
from functions.sources import SourcesError, load_sources
from infra import db
from infra.readers import Reader
from infra.store import Store, utcnow

_LOGGER = logging.getLogger(__name__)

WINDOW_HOURS = 48
_CANDIDATES = 200


def configured_sources(path: Path) -> list[Source]:
    """The configured sources, or none (logged) if the file cannot be used."""
    try:
        return load_sources(path)
    except SourcesError as exc:
        _LOGGER.warning("no sources for the bot: %s", exc)
        return []


def _delivered(store: Store, reader_id: str) -> set[str]:
    table = db.delivered_stories
    with store.begin() as conn:
        rows = conn.execute(
            select(table.c.story_id).where(table.c.reader_id == reader_id)
        )
        return {row.story_id for row in rows}


def _stories(store: Store, since: datetime) -> list[Story]:
    """Recent stories, most covered first, then newest."""
    stories = recent_stories(store, since=since)
    return sorted(stories, key=lambda s: (-s.coverage, -s.last_seen.timestamp()))[
        :_CANDIDATES
    ]


def _entry(
    story: Story, items: list[Item], lang: str, sources: dict[str, Source]
) -> DigestEntry | None:
    """An extractive entry with one link per outlet, earliest article first."""
    if not items:
        return None
    story.sources = sorted({item.source for item in items})
    links: list[SourceLink] = []
    seen: set[str] = set()
    for item in sorted(items, key=lambda i: i.published):
        if item.source in seen:
            continue
        seen.add(item.source)
        source = sources.get(item.source)
        links.append(
            SourceLink(
                name=source.display_name if source else item.source,
                url=item.url,
                ownership=source.ownership if source else "unknown",
            )
        )
    summary = extractive_summary(story, items, lang)
    return DigestEntry(story=story, summary=summary, links=links, score=story.coverage)


def build_from_store(
    store: Store,
    reader: Reader,
    *,
    sources: Iterable[Source] = (),
    now: datetime | None = None,
    edition: str | None = None,
) -> Digest:
    """A simple digest from stored stories, or stored items if none are clustered."""
    now = now or utcnow()
    by_name = {source.name: source for source in sources}
    since = now - timedelta(hours=WINDOW_HOURS)
    skip = _delivered(store, reader.id)

    candidates = [s for s in _stories(store, since) if s.id not in skip]
    if not candidates:
        items = store.list_items(since=since, limit=_CANDIDATES)
        candidates = [
            Story(
                id=item.id,
                title=item.title,
                member_ids=[item.id],
                first_seen=item.published,
                last_seen=item.published,
                langs=[item.lang],
                sources=[item.source],
            )
            for item in items
            if item.id not in skip
        ]

    entries: list[DigestEntry] = []
    for story in candidates:
        if len(entries) >= reader.digest_size:
            break
        entry = _entry(story, store.get_items(story.member_ids), reader.lang, by_name)
        if entry is not None:
            entries.append(entry)
    _LOGGER.info(
        "built a stored-data digest for reader %s: %d of %d candidates",
        reader.id,
        len(entries),
        len(candidates),
    )
    return Digest(
        reader_id=reader.id,
        edition=edition or now.strftime("%Y-%m-%d"),
        lang=reader.lang,
        generated_at=now,
        entries=entries,
    )


def source_health(store: Store) -> dict[str, dict[str, Any]]:
    """Stored fetch state per source name."""
    return {state["name"]: state for state in store.all_source_states()}
