"""Digests and readers for the bot's tests, built the way the pipeline builds them."""

from __future__ import annotations

from datetime import UTC, datetime

from functions.models import Digest, DigestEntry, KeyFact, SourceLink, Story, Summary

GENERATED = datetime(2025, 5, 12, 8, 30, tzinfo=UTC)


def make_entry(
    n: int,
    *,
    headline: str | None = None,
    text: str = "Officials announced the measure on Monday.",
    method: str = "llm",
    verdict: str = "verified",
    topics: tuple[str, ...] = ("economy",),
    links: list[SourceLink] | None = None,
    facts: tuple[str, ...] = (),
    sources: tuple[str, ...] = ("xinhua", "reuters"),
) -> DigestEntry:
    story = Story(
        id=f"s{n:04d}",
        title=headline or f"Story {n}",
        member_ids=[f"i{n}a", f"i{n}b"],
        first_seen=GENERATED,
        last_seen=GENERATED,
        langs=["en"],
        sources=list(sources),
    )
    summary = Summary(
        story_id=story.id,
        lang="en",
        headline=headline or f"Story {n}",
        sentences=[text],
        key_facts=[KeyFact(text=f, item_ids=[f"i{n}a"]) for f in facts],
        topics=list(topics),
        method=method,
        verdict=verdict,
    )
    if links is None:
        links = [
            SourceLink("Xinhua", f"https://example.com/x/{n}", "state media"),
            SourceLink("Reuters", f"https://example.com/r/{n}?a=1&b=2", "wire service"),
        ]
    return DigestEntry(story=story, summary=summary, links=links, score=1.0 / n)


def make_digest(
    entries: list[DigestEntry] | None = None,
    *,
    count: int = 3,
    reader_id: str = "r1",
    edition: str = "2025-05-12",
    lang: str = "en",
    opening: str = "",
) -> Digest:
    if entries is None:
        entries = [make_entry(n) for n in range(1, count + 1)]
    return Digest(
        reader_id=reader_id,
        edition=edition,
        lang=lang,
        generated_at=GENERATED,
        entries=entries,
        opening=opening,
    )
