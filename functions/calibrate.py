"""Choose the semantic sieve's thresholds from a labeled set, one per language pair.

Every pair of labeled items is scored by cosine similarity and sorted by
kind (en-en, zh-zh, en-zh). Per kind, the threshold is the one with the
best F1 at telling same-event pairs from the rest, placed midway in the
gap it cuts. Same-language and English-Chinese pairs live on different
scales, so one threshold for all would fail one of them.

The labeled set also picked these thresholds, so its F1 is optimistic;
`f1_heldout` is the honest figure: thresholds chosen on half of the
events and scored on the other half, both ways, averaged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from infra.config import ROOT
from infra.embed import Embedder, as_unit_rows, embedding_text
from infra.thresholds import OFF, PairMeasurement

_LOGGER = logging.getLogger(__name__)

LABELED_SET = Path(__file__).parent / "samples" / "dedup_labeled.jsonl"
PAIR_KINDS = ("en-en", "zh-zh", "en-zh")
# Below either floor a pair kind carries no usable signal and is switched off.
# AUC does not depend on how many pairs are the same event; F1 does.
MIN_USEFUL_AUC = 0.75
MIN_USEFUL_F1 = 0.5


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class PairScores:
    """Cosine similarity of every pair of one kind, and whether it is one event."""

    kind: str
    scores: np.ndarray
    same: np.ndarray
    clusters: np.ndarray


def load_labeled(path: Path = LABELED_SET) -> list[dict[str, Any]]:
    """The labeled items of a JSONL file, one object per line."""
    lines = path.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def file_digest(path: Path) -> str:
    """Short SHA-256 of a file: tells whether a measurement is of this very file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def pair_kind(lang_a: str, lang_b: str) -> str:
    """`en-zh` for either order; `en-en` for two English items."""
    return "-".join(sorted((lang_a, lang_b)))


def embed_labeled(embedder: Embedder, rows: list[dict[str, Any]]) -> np.ndarray:
    """Unit vectors of labeled items, embedded as the pipeline embeds articles."""
    texts = [embedding_text(r["title"], r["text"]) for r in rows]
    return as_unit_rows(embedder.embed(texts), embedder.dim)


def pair_scores(rows: list[dict[str, Any]], vectors: np.ndarray) -> list[PairScores]:
    """All pairs of distinct items, scored and grouped by language pair."""
    first, second = np.triu_indices(len(rows), k=1)
    similarity = (vectors @ vectors.T)[first, second]
    clusters = np.array([r["cluster"] for r in rows], dtype=object)
    langs = [r["lang"] for r in rows]
    kinds = np.array(
        [pair_kind(langs[i], langs[j]) for i, j in zip(first, second, strict=True)],
        dtype=object,
    )
    same = clusters[first] == clusters[second]
    grouped = []
    for kind in sorted(set(kinds)):
        mask = kinds == kind
        grouped.append(
            PairScores(
                kind=str(kind),
                scores=similarity[mask].astype(np.float64),
                same=same[mask].astype(bool),
                # The event of a same-event pair; of a mixed pair, its first item's.
                clusters=clusters[first[mask]],
            )
        )
    return grouped


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Chance that a same-event pair outscores a different-event one (ties: half)."""
    positives, negatives = int(same.sum()), int((~same).sum())
    if not positives or not negatives:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    # Tied scores share the mean of their ranks.
    values, inverse = np.unique(scores, return_inverse=True)
    mean_rank = np.bincount(inverse, weights=ranks) / np.bincount(inverse)
    ranks = mean_rank[inverse]
    wins = ranks[same].sum() - positives * (positives + 1) / 2
    return float(wins / (positives * negatives))


def best_threshold(scores: np.ndarray, same: np.ndarray) -> ThresholdChoice:
    """The cut with the best F1, placed midway between the scores it separates."""
    if not same.any():
        return ThresholdChoice(OFF, 0.0, 0.0, 0.0)
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], same[order]
    true_pos = np.cumsum(hits)
    kept = np.arange(1, len(ranked) + 1)
    # Only cut between two different scores: equal scores fall on one side.
    cuts = np.flatnonzero(np.append(ranked[1:] < ranked[:-1], True))
    precision = true_pos[cuts] / kept[cuts]
    recall = true_pos[cuts] / hits.sum()
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1))
    cut = cuts[best]
    below = ranked[cut + 1] if cut + 1 < len(ranked) else ranked[cut] - 0.01
    return ThresholdChoice(
        threshold=float((ranked[cut] + below) / 2),
        precision=float(precision[best]),
        recall=float(recall[best]),
        f1=float(f1[best]),
    )


def score_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """F1 of calling every pair at or above `threshold` one event."""
    called = scores >= threshold
    true_pos = int((called & same).sum())
    if not true_pos:
        return 0.0
    precision = true_pos / int(called.sum())
    recall = true_pos / int(same.sum())
    return 2 * precision * recall / (precision + recall)


def heldout_f1(pairs: PairScores) -> float:
    """F1 with thresholds chosen on half of the events and scored on the other."""
    fold = np.array([_fold(c) for c in pairs.clusters])
    results = []
    for train in (0, 1):
        fit, test = fold == train, fold != train
        if not pairs.same[fit].any() or not pairs.same[test].any():
            continue
        choice = best_threshold(pairs.scores[fit], pairs.same[fit])
        results.append(score_at(pairs.scores[test], pairs.same[test], choice.threshold))
    return float(np.mean(results)) if results else float("nan")


def _fold(cluster: str) -> int:
    # A stable split of events: the same half on every machine and run.
    return hashlib.sha256(str(cluster).encode("utf-8")).digest()[0] % 2


def measure(
    embedder: Embedder,
    path: Path = LABELED_SET,
    *,
    measured: date | None = None,
) -> list[PairMeasurement]:
    """Score every pair kind of the labeled set with `embedder` and pick thresholds."""
    rows = load_labeled(path)
    vectors = embed_labeled(embedder, rows)
    shown = path.resolve()
    if shown.is_relative_to(ROOT):
        shown = shown.relative_to(ROOT)
    day = (measured or date.today()).isoformat()
    results = []
    for pairs in pair_scores(rows, vectors):
        if pairs.kind not in PAIR_KINDS:
            continue
        choice = best_threshold(pairs.scores, pairs.same)
        auc = roc_auc(pairs.scores, pairs.same)
        same, other = pairs.scores[pairs.same], pairs.scores[~pairs.same]
        note = ""
        threshold = choice.threshold
        if auc < MIN_USEFUL_AUC or choice.f1 < MIN_USEFUL_F1:
            note = (
                f"no usable separation (AUC {auc:.2f}, best F1 {choice.f1:.2f} "
                f"at {choice.threshold:.3f}): pair switched off"
            )
            threshold = OFF
        results.append(
            PairMeasurement(
                embedder=embedder.name,
                pair=pairs.kind,
                threshold=round(threshold, 4),
                auc=auc,
                precision=choice.precision,
                recall=choice.recall,
                f1=choice.f1,
                f1_heldout=heldout_f1(pairs),
                positives=int(pairs.same.sum()),
                negatives=int((~pairs.same).sum()),
                same_mean=float(same.mean()) if len(same) else float("nan"),
                same_p05=float(np.quantile(same, 0.05)) if len(same) else float("nan"),
                other_mean=float(other.mean()),
                other_p99=float(np.quantile(other, 0.99)),
                measured=day,
                labeled_set=str(shown),
                labeled_digest=file_digest(path),
                note=note,
            )
        )
    _LOGGER.info(
        "calibrated %s on %d items: %s",
        embedder.name,
        len(rows),
        ", ".join(f"{m.pair} {m.threshold:.3f} (F1 {m.f1:.2f})" for m in results),
    )
    return results
