"""Fixtures for clustering: the fake Upstash server, both indexes, item makers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from functions.cluster import ClusterConfig, ClusterReport, cluster_items
from functions.models import Item
from infra.config import CLUSTER_THRESHOLDS
from infra.store import Store
from infra.vector import LocalVectorIndex, UpstashVectorIndex, VectorIndex
from tests.fakes.upstash import FakeUpstash, ServedFake

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

# The fake index's model scores on its own scale (measured on the test stories).
FAKE_UPSTASH_THRESHOLDS = {"en-en": 0.55, "zh-zh": 0.55, "en-zh": 0.45}


def make_item(
    id: str,
    title: str,
    text: str = "",
    *,
    lang: str = "en",
    source: str | None = None,
    hours: float = 0.0,
    url: str | None = None,
    keys: list[str] | None = None,
) -> Item:
    source = source or f"src-{id}"
    url = url or f"https://{source}.example/{id}"
    return Item(
        id=id,
        source=source,
        url=url,
        title=title,
        text=text,
        lang=lang,
        published=T0 + timedelta(hours=hours),
        keys=keys if keys is not None else ["url:" + url.split("://", 1)[-1]],
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
    )


def cluster_config(**changes: Any) -> ClusterConfig:
    thresholds = {k: dict(v) for k, v in CLUSTER_THRESHOLDS.items()}
    thresholds["upstash"] = dict(FAKE_UPSTASH_THRESHOLDS)
    return replace(ClusterConfig(thresholds=thresholds), **changes)


@pytest.fixture(scope="session")
def served_upstash() -> Iterator[ServedFake]:
    with ServedFake(FakeUpstash()) as served:
        yield served


@pytest.fixture
def upstash(served_upstash: ServedFake) -> Iterator[ServedFake]:
    served_upstash.fake.reset()
    yield served_upstash
    served_upstash.fake.reset()


def upstash_index(
    served: ServedFake,
    store: Store,
    *,
    timeout_s: float = 2.0,
    token: str | None = None,
) -> UpstashVectorIndex:
    return UpstashVectorIndex(
        served.url,
        token or served.fake.token,
        timeout_s=timeout_s,
        retries=0,
        fallback=LocalVectorIndex(store),
    )


@dataclass
class Harness:
    """One store and one index, run after run, the way the pipeline calls them."""

    store: Store
    index: VectorIndex
    settle: Callable[[], None]
    config: ClusterConfig = field(default_factory=cluster_config)
    reports: list[ClusterReport] = field(default_factory=list)

    async def run(
        self, items: list[Item], now: datetime | None = None
    ) -> ClusterReport:
        now = now or max(i.published for i in items)
        report = await cluster_items(
            self.store, self.index, items, now=now, config=self.config
        )
        # Between runs time passes, so the remote index has indexed everything.
        self.settle()
        self.reports.append(report)
        return report

    def partition(self) -> set[frozenset[str]]:
        from infra import db

        with self.store.begin() as conn:
            rows = conn.execute(db.story_members.select()).all()
        groups: dict[str, set[str]] = {}
        for r in rows:
            groups.setdefault(r.story_id, set()).add(r.item_id)
        return {frozenset(g) for g in groups.values()}

    def story_of(self, item_id: str) -> str:
        from infra import db

        m = db.story_members
        with self.store.begin() as conn:
            return str(
                conn.execute(
                    m.select()
                    .with_only_columns(m.c.story_id)
                    .where(m.c.item_id == item_id)
                ).scalar_one()
            )


@pytest.fixture(params=["local", "upstash"])
def harness(
    request: pytest.FixtureRequest, store: Store, served_upstash: ServedFake
) -> Iterator[Harness]:
    """The same behavioural tests against both indexes."""
    served_upstash.fake.reset()
    if request.param == "local":
        yield Harness(store, LocalVectorIndex(store), settle=lambda: None)
    else:
        index = upstash_index(served_upstash, store)
        yield Harness(store, index, settle=served_upstash.fake.settle)
    served_upstash.fake.reset()


class DictEmbedder:
    """Vectors chosen by the test, by text: for exact control of similarities."""

    name = "test-dict"

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors
        self.dim = len(next(iter(vectors.values())))

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.array([self.vectors[t.split(".")[0]] for t in texts], dtype=float)
