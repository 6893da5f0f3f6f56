"""Score clustering on a labeled file: pairwise and B-cubed, per sieve, with a sweep.

The labeled file holds one JSON object per line with `id`, `source`,
`lang`, `title`, `text`, `url`, `published` (ISO 8601) and the gold
`cluster`. Every evaluation clusters all items in one run, in a fresh
in-memory store, so the numbers depend on the configuration only.
Vectors are computed once per file and reused by every configuration.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from functions.cluster import SIEVES, ClusterConfig, cluster_items
from functions.models import Item
from functions.normalize import canonical_url
from infra import db
from infra.store import Store
from infra.vector import Neighbour, VectorDoc, VectorIndex, Window

_LOGGER = logging.getLogger(__name__)

REQUIRED = ("id", "source", "lang", "title", "text", "url", "published", "cluster")
THRESHOLD_GRID = [round(0.2 + 0.05 * k, 2) for k in range(16)]  # 0.20 .. 0.95
JACCARD_GRID = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
QUORUM_GRID = [0.34, 0.5, 0.6, 0.67, 0.75, 1.0]
BONUS_GRID = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25]
PAIR_KINDS = ("en-en", "zh-zh", "en-zh")


class LabeledFileError(ValueError):
    """The labeled file is not what `digest eval dedup` reads."""


@dataclass(frozen=True)
class Labeled:
    item: Item
    cluster: str


def load_labeled(path: Path) -> list[Labeled]:
    """Read a labeled JSONL file; errors name the line that is wrong."""
    records = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabeledFileError(
                    f"{path}:{number}: not JSON ({exc.msg})"
                ) from exc
            missing = [k for k in REQUIRED if k not in raw]
            if missing:
                raise LabeledFileError(f"{path}:{number}: missing {', '.join(missing)}")
            if raw["id"] in seen:
                raise LabeledFileError(f"{path}:{number}: duplicate id {raw['id']!r}")
            seen.add(str(raw["id"]))
            records.append(Labeled(_item(raw, path, number), str(raw["cluster"])))
    if not records:
        raise LabeledFileError(f"{path}: no records")
    return records


def _item(raw: dict[str, Any], path: Path, number: int) -> Item:
    try:
        published = datetime.fromisoformat(str(raw["published"]).replace("Z", "+00:00"))
    except ValueError as exc:
        raise LabeledFileError(f"{path}:{number}: bad published time") from exc
    if published.tzinfo is None:
        published = published.replace(tzinfo=UTC)
    url = canonical_url(str(raw["url"]))
    return Item(
        id=str(raw["id"]),
        source=str(raw["source"]),
        url=url,
        title=str(raw["title"]),
        text=str(raw["text"]),
        lang=str(raw["lang"]),
        published=published.astimezone(UTC),
        keys=["url:" + url.split("://", 1)[-1]] if url else [],
    )


# Metrics -----------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    f1: float

    def as_dict(self) -> dict[str, float]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


def _score(hits: float, predicted: float, gold: float) -> Score:
    precision = hits / predicted if predicted else 1.0
    recall = hits / gold if gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(precision, recall, f1)


def _pairs(labels: dict[str, str]) -> set[tuple[str, str]]:
    groups: dict[str, list[str]] = {}
    for item_id, label in labels.items():
        groups.setdefault(label, []).append(item_id)
    return {
        (a, b) if a < b else (b, a)
        for members in groups.values()
        for a, b in combinations(members, 2)
    }


def pairwise(
    predicted: dict[str, str],
    gold: dict[str, str],
    keep: Callable[[str, str], bool] = lambda a, b: True,
) -> Score:
    """Precision and recall over pairs put together, among pairs `keep` admits."""
    pred = {p for p in _pairs(predicted) if keep(*p)}
    true = {p for p in _pairs(gold) if keep(*p)}
    return _score(len(pred & true), len(pred), len(true))


def bcubed(predicted: dict[str, str], gold: dict[str, str]) -> Score:
    """B-cubed precision and recall: per item, averaged over items."""
    pred_groups: dict[str, set[str]] = {}
    gold_groups: dict[str, set[str]] = {}
    for item_id in gold:
        pred_groups.setdefault(predicted[item_id], set()).add(item_id)
        gold_groups.setdefault(gold[item_id], set()).add(item_id)
    precision = recall = 0.0
    for item_id in gold:
        mine = pred_groups[predicted[item_id]]
        truth = gold_groups[gold[item_id]]
        common = len(mine & truth)
        precision += common / len(mine)
        recall += common / len(truth)
    n = len(gold)
    precision, recall = precision / n, recall / n
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(precision, recall, f1)


# Running -------------------------------------------------------------------------


class ReplayIndex:
    """Wraps an index for evaluation: embeds each text once, stores nothing.

    Every evaluation is one run in a fresh store, so the index never holds
    earlier items: search finds nothing and upserts are not needed.
    """

    remote = False
    fallback: VectorIndex | None = None

    def __init__(self, inner: VectorIndex) -> None:
        self.inner = inner
        self.name = f"replay:{inner.name}"
        self._embedder: str | None = None
        self._vectors: dict[str, np.ndarray] = {}

    async def open(self) -> str:
        if self._embedder is None:
            self._embedder = await self.inner.open()
        return self._embedder

    async def embed(self, docs: Sequence[VectorDoc]) -> np.ndarray:
        todo = [d for d in docs if d.id not in self._vectors]
        if todo:
            fresh = await self.inner.embed(todo)
            self._vectors.update({d.id: fresh[k] for k, d in enumerate(todo)})
        return np.stack([self._vectors[d.id] for d in docs])

    async def search(
        self,
        vectors: np.ndarray,
        windows: Sequence[Window],
        *,
        top_k: int,
        min_score: float,
        exclude: frozenset[str] = frozenset(),
    ) -> list[list[Neighbour]]:
        return [[] for _ in windows]

    async def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return {i: self._vectors[i] for i in ids if i in self._vectors}

    async def upsert(self, docs: Sequence[VectorDoc], vectors: np.ndarray) -> None:
        return None

    async def prune(self, before: datetime) -> int:
        return 0

    async def info(self) -> dict[str, Any]:
        return await self.inner.info()


async def predict(
    records: Sequence[Labeled], index: VectorIndex, config: ClusterConfig
) -> dict[str, str]:
    """Cluster the records in one run; returns item id -> story id."""
    store = Store("sqlite://")
    try:
        items = [replace(r.item) for r in records]
        now = max(i.published for i in items)
        await cluster_items(store, index, items, now=now, config=config)
        m = db.story_members
        with store.begin() as conn:
            rows = conn.execute(m.select()).all()
        return {r.item_id: r.story_id for r in rows}
    finally:
        store.close()


def _kind(a: str, b: str) -> str:
    return "-".join(sorted((a, b)))


@dataclass
class Evaluation:
    """Every number `digest eval dedup` prints."""

    file: str
    items: int
    gold_clusters: int
    gold_pairs: dict[str, int]
    embedder: str
    index: str
    full: dict[str, Any]
    sieves: dict[str, dict[str, Any]]
    sweep: dict[str, list[dict[str, Any]]]
    config: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "items": self.items,
            "gold_clusters": self.gold_clusters,
            "gold_pairs": self.gold_pairs,
            "embedder": self.embedder,
            "index": self.index,
            **self.full,
            "sieves": self.sieves,
            "sweep": self.sweep,
            "config": self.config,
        }


def score_labels(
    records: Sequence[Labeled], predicted: dict[str, str]
) -> dict[str, Any]:
    """Scores of one prediction: overall, same- and cross-language, per pair."""
    gold = {r.item.id: r.cluster for r in records}
    lang = {r.item.id: r.item.lang for r in records}
    result: dict[str, Any] = {
        "pairwise": pairwise(predicted, gold).as_dict(),
        "bcubed": bcubed(predicted, gold).as_dict(),
        "same_language": pairwise(
            predicted, gold, lambda a, b: lang[a] == lang[b]
        ).as_dict(),
        "cross_language": pairwise(
            predicted, gold, lambda a, b: lang[a] != lang[b]
        ).as_dict(),
        "clusters": len(set(predicted.values())),
    }
    result["by_pair"] = {
        kind: pairwise(predicted, gold, _pair_kind(lang, kind)).as_dict()
        for kind in PAIR_KINDS
    }
    return result


def _pair_kind(lang: dict[str, str], kind: str) -> Callable[[str, str], bool]:
    """A pair filter keeping pairs of one kind ("en-zh")."""

    def keep(a: str, b: str) -> bool:
        return _kind(lang[a], lang[b]) == kind

    return keep


def _threshold_configs(
    config: ClusterConfig, embedder: str
) -> Iterable[tuple[str, float, ClusterConfig]]:
    table = config.table(embedder)
    for kind in PAIR_KINDS:
        for value in THRESHOLD_GRID:
            thresholds = {**config.thresholds, embedder: {**table, kind: value}}
            yield kind, value, replace(config, thresholds=thresholds)
    for value in JACCARD_GRID:
        yield "near_jaccard", value, replace(config, near_jaccard=value)
    for value in QUORUM_GRID:
        yield "quorum", value, replace(config, quorum=value)
    for value in BONUS_GRID:
        yield (
            "numbers_bonus",
            value,
            replace(config, numbers_bonus=value, numbers_bonus_by_embedder={}),
        )


async def evaluate(
    records: Sequence[Labeled],
    index: VectorIndex,
    config: ClusterConfig,
    *,
    file: str = "",
    sweep: bool = True,
) -> Evaluation:
    """Score each sieve alone, all together, and (optionally) a threshold sweep."""
    replay = index if isinstance(index, ReplayIndex) else ReplayIndex(index)
    embedder = await replay.open()
    gold = {r.item.id: r.cluster for r in records}
    lang = {r.item.id: r.item.lang for r in records}
    gold_pairs: dict[str, int] = {kind: 0 for kind in PAIR_KINDS}
    for a, b in _pairs(gold):
        kind = _kind(lang[a], lang[b])
        gold_pairs[kind] = gold_pairs.get(kind, 0) + 1

    full = score_labels(records, await predict(records, replay, config))
    sieves = {}
    for sieve in SIEVES:
        alone = replace(config, sieves=frozenset({sieve}))
        sieves[sieve] = score_labels(records, await predict(records, replay, alone))

    grid: dict[str, list[dict[str, Any]]] = {}
    if sweep:
        for name, value, variant in _threshold_configs(config, embedder):
            scores = score_labels(records, await predict(records, replay, variant))
            grid.setdefault(name, []).append({"value": value, **scores})

    return Evaluation(
        file=file,
        items=len(records),
        gold_clusters=len(set(gold.values())),
        gold_pairs=gold_pairs,
        embedder=embedder,
        index=index.name,
        full=full,
        sieves=sieves,
        sweep=grid,
        config={
            "window_hours": config.window.total_seconds() / 3600,
            "thresholds": config.table(embedder),
            "near_jaccard": config.near_jaccard,
            "quorum": config.quorum,
            "numbers_bonus": config.numbers_bonus,
            "cross_mnn": config.cross_mnn,
        },
    )


def render(evaluation: Evaluation) -> str:
    """The evaluation as a plain-text table."""
    e = evaluation
    pairs = ", ".join(f"{k} {v}" for k, v in e.gold_pairs.items())
    lines = [
        f"{e.file}: {e.items} items, {e.gold_clusters} gold clusters "
        f"(gold pairs: {pairs})",
        f"index {e.index}, embedder {e.embedder}, thresholds {e.config['thresholds']},"
        f" near {e.config['near_jaccard']}, quorum {e.config['quorum']}",
        "",
        f"{'':22}{'pairwise P':>11}{'R':>7}{'F1':>7}"
        f"   {'B-cubed F1':>10}{'stories':>9}",
    ]

    def row(label: str, scores: dict[str, Any], pair_key: str = "pairwise") -> str:
        p = scores[pair_key]
        b3 = f"{scores['bcubed']['f1']:>10.3f}" if pair_key == "pairwise" else " " * 10
        stories = f"{scores['clusters']:>9}" if pair_key == "pairwise" else ""
        return (
            f"{label:22}{p['precision']:>11.3f}{p['recall']:>7.3f}{p['f1']:>7.3f}"
            f"   {b3}{stories}"
        )

    for sieve in SIEVES:
        lines.append(row(f"{sieve} sieve alone", e.sieves[sieve]))
    lines.append(row("all sieves", e.full))
    lines.append(row("  same-language pairs", e.full, "same_language"))
    lines.append(row("  cross-language pairs", e.full, "cross_language"))
    for kind in PAIR_KINDS:
        p = e.full["by_pair"][kind]
        lines.append(
            f"{'  ' + kind + ' pairs':22}{p['precision']:>11.3f}{p['recall']:>7.3f}"
            f"{p['f1']:>7.3f}"
        )

    for name, points in e.sweep.items():
        lines += ["", f"sweep {name}:  value  pairs P    R     F1   (that pair: F1)"]
        for point in points:
            p = point["pairwise"]
            own = point["by_pair"].get(name, {}).get("f1")
            extra = f"   {own:.3f}" if own is not None else ""
            lines.append(
                f"{'':14}{point['value']:>6.2f}  {p['precision']:>6.3f}"
                f"{p['recall']:>6.3f}{p['f1']:>7.3f}{extra}"
            )
    return "\n".join(lines)
