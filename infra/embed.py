"""Embedders for the local vector index: text in, unit vectors out.

An `Embedder` has a `name` (the key of its thresholds in config, and of
its cached vectors in the store: change the name when the vectors
change), a `dim` and `embed(texts)`. The default is `HashingEmbedder`:
hashed character n-grams, no model and no download. It finds rewrites
in one language; it cannot match an English article with a Chinese one.
`infra.embedders.select_embedder` chooses between it and the bundled
multilingual model, as `DIGEST_EMBEDDER` asks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from functions.textnorm import compact, fold, is_cjk, ngram_hashes

_LOGGER = logging.getLogger(__name__)

EMBED_TEXT_CHARS = 300


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors whose cosine similarity means "same event"."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray | list[list[float]]: ...


def embedding_text(title: str, text: str, limit: int = EMBED_TEXT_CHARS) -> str:
    """What an article is embedded as: its title and the start of its text."""
    # The title is capped too: a broken feed's megabyte "headline" would cost
    # the multilingual model minutes.
    title = title.strip()[:limit]
    body = text.strip()
    if body.startswith(title):
        body = body[len(title) :].lstrip(" .:-")
    return f"{title}. {body[:limit]}".strip(" .") if body else title


def as_unit_rows(
    vectors: np.ndarray | Sequence[Sequence[float]], dim: int
) -> np.ndarray:
    """Any embedder's output as a float32 matrix of unit rows (zero rows stay zero)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.size == 0:
        return np.zeros((0, dim), dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


class HashingEmbedder:
    """Signed feature hashing of character n-grams over folded text.

    Latin text gives 3-, 4- and 5-grams (with spaces, so word edges count),
    Chinese text character bigrams (about one word each). Each n-gram lands
    in one of `dim` buckets with a random sign, so unrelated texts score
    near zero.
    """

    name = "hashing-v1"

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim
        if dim != 512:
            self.name = f"hashing-v1-{dim}"

    def _vector(self, text: str) -> np.ndarray:
        folded = compact(fold(text))
        sizes = (2,) if is_cjk(folded) else (3, 4, 5)
        hashes = np.concatenate([ngram_hashes(folded, n) for n in sizes])
        buckets = (hashes % np.uint32(self.dim)).astype(np.intp)
        signs = np.where(hashes & np.uint32(0x80000000), -1.0, 1.0)
        return np.bincount(buckets, weights=signs, minlength=self.dim)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return as_unit_rows(np.stack([self._vector(t) for t in texts]), self.dim)
