"""The records that flow between stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Ownership = Literal[
    "state media",
    "party media",
    "public broadcaster",
    "independent",
    "commercial",
    "wire service",
    "government",
    "unknown",
]


@dataclass(frozen=True)
class Source:
    """One feed as configured in `sources.toml` (or one file of a directory)."""

    name: str
    url: str
    lang: str = "en"
    weight: float = 1.0
    timezone: str = "UTC"
    ownership: str = "unknown"
    label: str = ""
    max_age_hours: float = 72.0
    gmt_means_local: bool = False

    @property
    def display_name(self) -> str:
        return self.label or self.name


@dataclass
class Item:
    """One article, normalized; `id` is stable across runs and feed churn."""

    source: str
    url: str
    title: str
    text: str
    lang: str
    published: datetime
    guid: str = ""
    id: str = ""
    published_estimated: bool = False
    first_seen: datetime | None = None
    content_hash: str = ""
    title_hash: str = ""
    keys: list[str] = field(default_factory=list)

    def snippet(self, limit: int = 300) -> str:
        return (self.title + ". " + self.text)[:limit]


@dataclass
class Story:
    """One event, told by one or more items (possibly in several languages)."""

    id: str
    title: str
    member_ids: list[str]
    first_seen: datetime
    last_seen: datetime
    langs: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    # Starts at 1; rises only when a new member brings facts (numbers, names)
    # the story did not have. A digest that sent revision N sends the story
    # again only once revision > N: more copies of known facts are not news.
    revision: int = 1
    # When the clustering run that raised the revision ran (not when the
    # member was published: a late item can still bring news after a send).
    revised_at: datetime | None = None
    new_facts: list[str] = field(default_factory=list)

    @property
    def coverage(self) -> int:
        """Distinct sources carrying the story: the strongest importance signal."""
        return len(set(self.sources))

    @property
    def updated_with_new_facts(self) -> bool:
        """True once any member after the first added facts."""
        return self.revision > 1


@dataclass
class KeyFact:
    text: str
    item_ids: list[str]
    corroborated: bool = False
    # Independent sources carrying the fact (copies of one wire story count once).
    sources: list[str] = field(default_factory=list)


@dataclass
class Summary:
    """What a reader sees of one story, in one language."""

    story_id: str
    lang: str
    headline: str
    sentences: list[str]
    key_facts: list[KeyFact] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    importance: float = 0.5
    method: str = "extractive"  # extractive | llm | extractive-fallback
    provider: str = ""
    prompt_version: str = ""
    verdict: str = (
        "unchecked"  # unchecked | verified | facts-checked | partly-verified | failed
    )
    # Set when no member is written in `lang`: the language the text is in.
    text_lang: str = ""
    # Per sentence, the independent sources that carry it (after fact-check).
    sentence_sources: list[list[str]] = field(default_factory=list)
    checker: str = ""  # provider of the model fact-check pass, if it ran

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    def attributed_sentences(self) -> list[str]:
        """Sentences, each claim one source alone carries attributed to it."""
        out: list[str] = []
        for n, sentence in enumerate(self.sentences):
            sources = self.sentence_sources[n] if n < len(self.sentence_sources) else []
            if len(sources) != 1:
                out.append(sentence)
            elif self.lang == "zh":
                out.append(f"{sentence}（据{sources[0]}）")
            else:
                out.append(f"{sentence} ({sources[0]})")
        return out


@dataclass
class SourceLink:
    name: str
    url: str
    ownership: str


@dataclass
class DigestEntry:
    story: Story
    summary: Summary
    links: list[SourceLink]
    score: float = 0.0
    # Sent to this reader before; back because new facts revised the story.
    is_update: bool = False


@dataclass
class Digest:
    """One edition for one reader: the selected story set every channel renders."""

    reader_id: str
    edition: str
    lang: str
    generated_at: datetime
    entries: list[DigestEntry]
    opening: str = ""
