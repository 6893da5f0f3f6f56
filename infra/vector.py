"""The vector-index port: where the semantic sieve finds an item's neighbours.

    VectorIndex (protocol)
    ├── LocalVectorIndex    unit vectors in the state store, from a local Embedder
    └── UpstashVectorIndex  Upstash Vector, embedding with the index's own model;
                            carries a LocalVectorIndex to fall back on

    IndexUnavailable        the index cannot answer now (error, timeout, bad reply)

Scores are cosine similarities in [-1, 1] whatever the index: Upstash's
normalized (1 + cos) / 2 is mapped back. An index only knows items of
earlier runs; the clusterer matches the items of one run among
themselves, because Upstash makes new vectors queryable only after a
short delay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import numpy as np
from sqlalchemy import and_, delete, func, insert, select
from upstash_vector import AsyncIndex
from upstash_vector.errors import UpstashError
from upstash_vector.types import Data

from infra import db
from infra.config import Settings
from infra.embed import Embedder, HashingEmbedder, as_unit_rows
from infra.embedders import select_embedder
from infra.logs import redact
from infra.store import Store, as_utc, in_chunks

_LOGGER = logging.getLogger(__name__)

SEARCH_BLOCK = 1024
UPSTASH_QUERY_CHUNK = 32
UPSTASH_UPSERT_CHUNK = 500


class IndexUnavailable(Exception):
    """The index failed or timed out; the run continues on the fallback."""

    def __init__(self, index: str, reason: str) -> None:
        self.index = index
        self.reason = redact(reason)[:300]
        super().__init__(f"{index}: {self.reason}")


@dataclass(frozen=True)
class VectorDoc:
    """One item as an index stores it: the text to embed and what to filter on."""

    id: str
    text: str
    lang: str
    source: str
    published: datetime
    story_id: str = ""
    title: str = ""


@dataclass(frozen=True)
class Neighbour:
    id: str
    score: float
    lang: str
    published: datetime
    story_id: str = ""


@dataclass(frozen=True)
class Window:
    """Search only items published in [since, until], in `lang` when given."""

    since: datetime
    until: datetime
    lang: str | None = None


class VectorIndex(Protocol):
    """What the semantic sieve needs from a vector index."""

    name: str
    remote: bool
    fallback: VectorIndex | None

    async def open(self) -> str:
        """Check the index and return its embedder's name (the thresholds key)."""
        ...

    async def embed(self, docs: Sequence[VectorDoc]) -> np.ndarray:
        """Unit vectors of `docs`, one row each, in the index's embedding space."""
        ...

    async def search(
        self,
        vectors: np.ndarray,
        windows: Sequence[Window],
        *,
        top_k: int,
        min_score: float,
        exclude: frozenset[str] = frozenset(),
    ) -> list[list[Neighbour]]:
        """Nearest stored items of each vector within its window, best first."""
        ...

    async def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]: ...

    async def upsert(self, docs: Sequence[VectorDoc], vectors: np.ndarray) -> None:
        """Store `docs` (with their story ids) so later runs can find them."""
        ...

    async def prune(self, before: datetime) -> int:
        """Delete items published before `before`; returns how many went."""
        ...

    async def info(self) -> dict[str, Any]: ...


def _ts(value: datetime) -> int:
    return int(value.timestamp())


def _stamp(value: datetime) -> float:
    """Epoch seconds of a stored time (SQLite hands back naive UTC)."""
    aware = as_utc(value)
    assert aware is not None
    return aware.timestamp()


def _pack(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def _unpack(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)


def _top(scores: np.ndarray, mask: np.ndarray, top_k: int) -> list[int]:
    picked = np.flatnonzero(mask)
    if len(picked) > top_k:
        best = np.argpartition(-scores[picked], top_k - 1)[:top_k]
        picked = picked[best]
    return sorted(picked.tolist(), key=lambda j: (-scores[j], j))


# Local ------------------------------------------------------------------------


@dataclass
class _Snapshot:
    """Stored vectors of one time range, as arrays, for brute-force search."""

    since: datetime
    until: datetime
    ids: list[str] = field(default_factory=list)
    stories: list[str] = field(default_factory=list)
    langs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    stamps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    row: dict[str, int] = field(default_factory=dict)


class LocalVectorIndex:
    """Vectors in the state store, searched exactly (a matrix product per run).

    A member clustered while another index was in charge (or under another
    embedder) has no vector here yet; it is embedded from its stored text
    the first time a search covers it, so a fallback run misses nothing.
    """

    remote = False
    fallback: VectorIndex | None = None

    def __init__(self, store: Store, embedder: Embedder | None = None) -> None:
        self.store = store
        self.embedder = embedder or HashingEmbedder()
        self.name = f"local:{self.embedder.name}"
        self._snapshot: _Snapshot | None = None

    async def open(self) -> str:
        return self.embedder.name

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return as_unit_rows(self.embedder.embed(texts), self.embedder.dim)

    async def embed(self, docs: Sequence[VectorDoc]) -> np.ndarray:
        texts = [d.text for d in docs]
        return await asyncio.to_thread(self._embed_texts, texts)

    async def _load(self, since: datetime, until: datetime) -> _Snapshot:
        m, v = db.story_members, db.cluster_vectors
        joined = m.outerjoin(
            v, and_(v.c.item_id == m.c.item_id, v.c.embedder == self.embedder.name)
        )
        query = (
            select(
                m.c.item_id,
                m.c.story_id,
                m.c.lang,
                m.c.published,
                m.c.embed_text,
                v.c.vector,
            )
            .select_from(joined)
            .where(m.c.published >= since, m.c.published <= until)
            .order_by(m.c.published, m.c.item_id)
        )
        with self.store.begin() as conn:
            rows = conn.execute(query).all()

        missing = [i for i, r in enumerate(rows) if r.vector is None]
        # A model embedder takes a while: off the event loop, like `embed`.
        texts = [rows[i].embed_text for i in missing]
        fresh = await asyncio.to_thread(self._embed_texts, texts)
        if missing:
            self._store_vectors(
                [(rows[i].item_id, rows[i].lang, rows[i].published) for i in missing],
                fresh,
            )
            _LOGGER.info(
                "local index: embedded %d stored members with %s",
                len(missing),
                self.embedder.name,
            )

        matrix = np.zeros((len(rows), self.embedder.dim), dtype=np.float32)
        for k, i in enumerate(missing):
            matrix[i] = fresh[k]
        for i, r in enumerate(rows):
            if r.vector is not None:
                matrix[i] = _unpack(r.vector)
        ids = [r.item_id for r in rows]
        return _Snapshot(
            since=since,
            until=until,
            ids=ids,
            stories=[r.story_id for r in rows],
            langs=np.array([r.lang for r in rows], dtype=object),
            stamps=np.array([_stamp(r.published) for r in rows]),
            matrix=matrix,
            row={item_id: i for i, item_id in enumerate(ids)},
        )

    async def _covering(self, since: datetime, until: datetime) -> _Snapshot:
        snap = self._snapshot
        if snap is None or since < snap.since or until > snap.until:
            if snap is not None:
                since, until = min(since, snap.since), max(until, snap.until)
            snap = self._snapshot = await self._load(since, until)
        return snap

    async def search(
        self,
        vectors: np.ndarray,
        windows: Sequence[Window],
        *,
        top_k: int,
        min_score: float,
        exclude: frozenset[str] = frozenset(),
    ) -> list[list[Neighbour]]:
        if not len(windows):
            return []
        snap = await self._covering(
            min(w.since for w in windows), max(w.until for w in windows)
        )
        results: list[list[Neighbour]] = [[] for _ in windows]
        if not snap.ids:
            return results
        allowed = np.array([i not in exclude for i in snap.ids])
        for start in range(0, len(windows), SEARCH_BLOCK):
            block = vectors[start : start + SEARCH_BLOCK] @ snap.matrix.T
            for k, scores in enumerate(block):
                w = windows[start + k]
                mask = (
                    allowed
                    & (scores >= min_score)
                    & (snap.stamps >= w.since.timestamp())
                    & (snap.stamps <= w.until.timestamp())
                )
                if w.lang is not None:
                    mask &= snap.langs == w.lang
                results[start + k] = [
                    Neighbour(
                        id=snap.ids[j],
                        score=float(scores[j]),
                        lang=str(snap.langs[j]),
                        published=datetime.fromtimestamp(snap.stamps[j], UTC),
                        story_id=snap.stories[j],
                    )
                    for j in _top(scores, mask, top_k)
                ]
        return results

    async def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        snap = self._snapshot
        if snap is not None:
            found = {i: snap.matrix[snap.row[i]] for i in ids if i in snap.row}
        rest = [i for i in ids if i not in found]
        if rest:
            v = db.cluster_vectors
            with self.store.begin() as conn:
                for chunk in in_chunks(rest):
                    rows = conn.execute(
                        select(v.c.item_id, v.c.vector).where(
                            v.c.item_id.in_(chunk), v.c.embedder == self.embedder.name
                        )
                    )
                    found.update({r.item_id: _unpack(r.vector) for r in rows})
        return found

    def _store_vectors(
        self, rows: Sequence[tuple[str, str, datetime]], vectors: np.ndarray
    ) -> None:
        v = db.cluster_vectors
        ids = [r[0] for r in rows]
        with self.store.begin() as conn:
            for chunk in in_chunks(ids):
                conn.execute(
                    delete(v).where(
                        v.c.item_id.in_(chunk), v.c.embedder == self.embedder.name
                    )
                )
            conn.execute(
                insert(v),
                [
                    {
                        "item_id": item_id,
                        "embedder": self.embedder.name,
                        "lang": lang,
                        "published": published,
                        "vector": _pack(vectors[k]),
                    }
                    for k, (item_id, lang, published) in enumerate(rows)
                ],
            )

    async def upsert(self, docs: Sequence[VectorDoc], vectors: np.ndarray) -> None:
        if not docs:
            return
        self._store_vectors([(d.id, d.lang, d.published) for d in docs], vectors)
        self._snapshot = None

    async def prune(self, before: datetime) -> int:
        v = db.cluster_vectors
        with self.store.begin() as conn:
            deleted = conn.execute(delete(v).where(v.c.published < before)).rowcount
        self._snapshot = None
        return int(deleted or 0)

    async def info(self) -> dict[str, Any]:
        v = db.cluster_vectors
        with self.store.begin() as conn:
            count = conn.execute(
                select(func.count())
                .select_from(v)
                .where(v.c.embedder == self.embedder.name)
            ).scalar_one()
        return {
            "index": self.name,
            "embedder": self.embedder.name,
            "dimension": self.embedder.dim,
            "vectors": int(count),
        }


# Upstash ----------------------------------------------------------------------

# What a failing Upstash call can raise through the SDK: its own error for an
# error body, httpx's for transport trouble, ValueError for a non-JSON body.
_UPSTASH_FAILURES = (
    UpstashError,
    httpx.HTTPError,
    TimeoutError,
    ValueError,
    KeyError,
    TypeError,
)


class UpstashVectorIndex:
    """Upstash Vector with its built-in embedding: upsert and search by text.

    Metadata on each vector: story id, source, language, publication time
    (`ts`, epoch seconds) and title. Searches filter on `ts`; vectors older
    than the clustering window are deleted, which keeps the index inside
    the free tier. Every call has a deadline; any failure raises
    `IndexUnavailable` and the clusterer reruns on `fallback`.
    """

    name = "upstash"
    remote = True

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 1,
        namespace: str = "",
        fallback: VectorIndex | None = None,
    ) -> None:
        self._index = AsyncIndex(
            url=url.rstrip("/"),
            token=token,
            retries=retries,
            retry_interval=0.2,
            allow_telemetry=False,
        )
        self.timeout_s = timeout_s
        self.namespace = namespace
        self.fallback = fallback
        self._embedder: str | None = None

    async def _call(self, what: str, call: Any) -> Any:
        try:
            return await asyncio.wait_for(call, self.timeout_s)
        except _UPSTASH_FAILURES as exc:
            detail = str(exc) or f"no answer in {self.timeout_s:g}s"
            raise IndexUnavailable(
                self.name, f"{what}: {type(exc).__name__}: {detail}"
            ) from exc

    async def open(self) -> str:
        if self._embedder is not None:
            return self._embedder
        info = await self._call("info", self._index.info())
        similarity = (info.similarity_function or "").upper()
        if similarity not in ("COSINE", "DOT_PRODUCT"):
            raise IndexUnavailable(self.name, f"unsupported similarity {similarity}")
        model = info.dense_index.embedding_model if info.dense_index else ""
        if not model:
            raise IndexUnavailable(
                self.name, "the index has no embedding model; create it with one"
            )
        self._embedder = f"upstash:{model}"
        return self._embedder

    def _metadata(self, doc: VectorDoc) -> dict[str, Any]:
        return {
            "story": doc.story_id,
            "source": doc.source,
            "lang": doc.lang,
            "ts": _ts(doc.published),
            "title": doc.title[:200],
        }

    async def _upsert_data(self, docs: Sequence[VectorDoc]) -> None:
        for start in range(0, len(docs), UPSTASH_UPSERT_CHUNK):
            chunk = docs[start : start + UPSTASH_UPSERT_CHUNK]
            payload = [
                Data(id=d.id, data=d.text, metadata=self._metadata(d)) for d in chunk
            ]
            await self._call(
                "upsert", self._index.upsert(vectors=payload, namespace=self.namespace)
            )

    async def embed(self, docs: Sequence[VectorDoc]) -> np.ndarray:
        """Upsert the texts (no story yet), then read back the vectors Upstash made."""
        if not docs:
            return np.zeros((0, 0), dtype=np.float32)
        await self._upsert_data(docs)
        found = await self.vectors([d.id for d in docs])
        missing = [d.id for d in docs if d.id not in found]
        if missing:
            raise IndexUnavailable(
                self.name, f"{len(missing)} vectors not readable after upsert"
            )
        return as_unit_rows(
            np.stack([found[d.id] for d in docs]), len(found[docs[0].id])
        )

    def _filter(self, window: Window) -> str:
        # Vectors without a story are texts of a run still in progress.
        parts = [
            f"ts >= {_ts(window.since)}",
            f"ts <= {_ts(window.until)}",
            "story != ''",
        ]
        if window.lang is not None:
            parts.append(f"lang = '{window.lang}'")
        return " AND ".join(parts)

    async def search(
        self,
        vectors: np.ndarray,
        windows: Sequence[Window],
        *,
        top_k: int,
        min_score: float,
        exclude: frozenset[str] = frozenset(),
    ) -> list[list[Neighbour]]:
        results: list[list[Neighbour]] = []
        for start in range(0, len(windows), UPSTASH_QUERY_CHUNK):
            queries: list[Any] = [
                {
                    "vector": vectors[start + k].tolist(),
                    "top_k": top_k,
                    "include_metadata": True,
                    "filter": self._filter(w),
                }
                for k, w in enumerate(windows[start : start + UPSTASH_QUERY_CHUNK])
            ]
            answers = await self._call(
                "query",
                self._index.query_many(queries=queries, namespace=self.namespace),
            )
            for answer in answers:
                results.append(self._neighbours(answer, min_score, exclude))
        return results

    def _neighbours(
        self, answer: Iterable[Any], min_score: float, exclude: frozenset[str]
    ) -> list[Neighbour]:
        found = []
        for hit in answer:
            meta = hit.metadata or {}
            # Upstash normalizes cosine and dot product to (1 + x) / 2.
            score = 2.0 * float(hit.score) - 1.0
            if hit.id in exclude or score < min_score or "ts" not in meta:
                continue
            found.append(
                Neighbour(
                    id=str(hit.id),
                    score=score,
                    lang=str(meta.get("lang", "")),
                    published=datetime.fromtimestamp(int(meta["ts"]), UTC),
                    story_id=str(meta.get("story", "")),
                )
            )
        return sorted(found, key=lambda n: (-n.score, n.id))

    async def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for chunk in in_chunks(ids, UPSTASH_UPSERT_CHUNK):
            fetched = await self._call(
                "fetch",
                self._index.fetch(
                    ids=chunk, include_vectors=True, namespace=self.namespace
                ),
            )
            found.update(
                (r.id, np.asarray(r.vector, dtype=np.float32))
                for r in fetched
                if r is not None and r.vector
            )
        return found

    async def upsert(self, docs: Sequence[VectorDoc], vectors: np.ndarray) -> None:
        # By text again, so the stored vector is Upstash's own and the
        # metadata now carries the story.
        await self._upsert_data(docs)

    async def prune(self, before: datetime) -> int:
        result = await self._call(
            "delete",
            self._index.delete(filter=f"ts < {_ts(before)}", namespace=self.namespace),
        )
        return int(result.deleted)

    async def info(self) -> dict[str, Any]:
        info = await self._call("info", self._index.info())
        return {
            "index": self.name,
            "embedder": self._embedder or "",
            "dimension": info.dimension,
            "similarity": info.similarity_function,
            "vectors": info.vector_count,
            "pending": info.pending_vector_count,
        }


def build_index(settings: Settings, store: Store) -> VectorIndex:
    """Upstash when it is configured (with the local index behind it), else local."""
    local = LocalVectorIndex(store, select_embedder(settings))
    url = settings.upstash_vector_rest_url
    token = settings.upstash_vector_rest_token
    if not url or token is None:
        return local
    return UpstashVectorIndex(
        url,
        token.get_secret_value(),
        timeout_s=settings.upstash_vector_timeout_s,
        retries=settings.upstash_vector_retries,
        namespace=settings.upstash_vector_namespace,
        fallback=local,
    )
