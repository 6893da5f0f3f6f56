"""The local vector index in the state store."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from infra import db
from infra.embed import HashingEmbedder
from infra.store import Store
from infra.vector import LocalVectorIndex, Window
from tests.cluster.conftest import T0, DictEmbedder, Harness, cluster_config, make_item

VECTORS = {
    "a": [1.0, 0.0, 0.0],
    "b": [0.9, 0.1, 0.0],
    "c": [0.8, 0.0, 0.2],
    "d": [0.0, 1.0, 0.0],
}


async def stored_index(store: Store) -> LocalVectorIndex:
    """Four clustered items a-d, one hour apart; c is Chinese."""
    index = LocalVectorIndex(store, DictEmbedder(VECTORS))
    config = cluster_config(thresholds={"test-dict": {"same": 1.01, "cross": 1.01}})
    items = [
        make_item(k, k, hours=n, lang="zh" if k == "c" else "en")
        for n, k in enumerate("abcd")
    ]
    await Harness(store, index, lambda: None, config).run(items)
    return index


async def test_search_keeps_to_the_window_language_and_exclusions(store: Store) -> None:
    index = await stored_index(store)
    query = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    wide = Window(T0 - timedelta(hours=1), T0 + timedelta(hours=5))

    (everything,) = await index.search(query, [wide], top_k=10, min_score=-1)
    (early,) = await index.search(
        query, [Window(T0, T0 + timedelta(hours=1))], top_k=10, min_score=-1
    )
    (chinese,) = await index.search(
        query, [Window(wide.since, wide.until, "zh")], top_k=10, min_score=-1
    )
    (best,) = await index.search(
        query, [wide], top_k=2, min_score=0.5, exclude=frozenset({"a"})
    )

    assert [n.id for n in everything] == ["a", "b", "c", "d"]
    assert [n.id for n in early] == ["a", "b"]
    assert [n.id for n in chinese] == ["c"]
    assert [n.id for n in best] == ["b", "c"]
    assert everything[0].score == 1.0
    assert everything[1].lang == "en" and chinese[0].lang == "zh"


async def test_members_without_a_vector_are_embedded_from_their_stored_text(
    store: Store,
) -> None:
    await stored_index(store)
    other = LocalVectorIndex(store, HashingEmbedder())

    vectors = other.embedder.embed(["a"])
    wide = Window(T0 - timedelta(hours=1), T0 + timedelta(hours=5))
    (found,) = await other.search(vectors, [wide], top_k=1, min_score=-1)

    assert found[0].id == "a"
    with store.begin() as conn:
        rows = conn.execute(db.cluster_vectors.select()).all()
    assert sorted((r.embedder, r.item_id) for r in rows) == sorted(
        [("test-dict", k) for k in "abcd"] + [("hashing-v1", k) for k in "abcd"]
    )


async def test_prune_deletes_vectors_published_before_the_cutoff(store: Store) -> None:
    index = await stored_index(store)

    deleted = await index.prune(T0 + timedelta(hours=2))
    info = await index.info()

    assert deleted == 2
    assert info["vectors"] == 2
    assert set(await index.vectors(["a", "c", "d"])) == {"c", "d"}
