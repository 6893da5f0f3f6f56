"""Stories, not articles: the behaviour readers rely on, against both indexes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.cluster import pending_items, recent_stories
from functions.models import Item
from tests.cluster.conftest import T0, Harness, make_item

QUAKE = [
    (
        "Magnitude 6.1 earthquake strikes Sichuan, killing 12",
        "A magnitude 6.1 earthquake struck Luding county in Sichuan province on "
        "Monday, killing 12 people and injuring 85.",
    ),
    (
        "Sichuan earthquake kills 12, injures 85",
        "At least 12 people were killed and 85 injured after a 6.1 magnitude "
        "earthquake hit Luding county in Sichuan.",
    ),
    (
        "Deadly 6.1 quake hits Luding county in southwest China",
        "The magnitude 6.1 earthquake in Luding, Sichuan province, left 12 people "
        "dead and 85 injured, officials said.",
    ),
    (
        "Earthquake in China's Sichuan province leaves 12 dead",
        "Twelve people died and 85 were injured when an earthquake of magnitude "
        "6.1 shook Luding county in Sichuan on Monday.",
    ),
    (
        "Rescuers search for survivors after Sichuan earthquake kills 12",
        "Rescue teams in Luding county, Sichuan, searched collapsed homes after the "
        "magnitude 6.1 earthquake that killed 12 and injured 85.",
    ),
    (
        "China: 6.1-magnitude earthquake in Sichuan kills at least 12",
        "A 6.1-magnitude earthquake hit Sichuan province's Luding county on Monday, "
        "killing at least 12 people and injuring 85 others.",
    ),
]

RRR = (
    "China's central bank cuts reserve requirement ratio by 50 basis points",
    "The People's Bank of China will cut the reserve requirement ratio for banks "
    "by 50 basis points from March 10, releasing about 1 trillion yuan.",
)


def quake_items(hours: float = 0.0) -> list[Item]:
    return [
        make_item(f"q{k}", title, text, hours=hours + k * 0.5)
        for k, (title, text) in enumerate(QUAKE)
    ]


async def test_six_differently_worded_headlines_become_one_story(
    harness: Harness,
) -> None:
    report = await harness.run(quake_items())

    assert harness.partition() == {frozenset(f"q{k}" for k in range(6))}
    assert report.stories_new == 1
    assert report.removed["semantic"] == 5


async def test_short_items_from_a_quiet_source_do_not_merge(harness: Harness) -> None:
    footer = "Issued by the Qingshan County Information Office. Call the office."
    titles = [
        "Notice: road maintenance on Friday",
        "Notice: water supply interruption",
        "Notice: library opening hours",
        "Notice: vaccination clinic opens",
        "Notice: tax office relocation",
    ]
    items = [
        make_item(f"n{k}", t, footer, source="qingshan-gov", hours=k)
        for k, t in enumerate(titles)
    ]

    report = await harness.run(items)

    assert report.stories_new == 5
    assert len(harness.partition()) == 5


async def test_look_alike_events_stay_apart(harness: Harness) -> None:
    sichuan = make_item("a", *QUAKE[0])
    yunnan = make_item(
        "b",
        "Magnitude 5.2 earthquake strikes Yunnan, no deaths reported",
        "A magnitude 5.2 earthquake struck Dali in Yunnan province on Tuesday, "
        "damaging 40 houses but killing nobody.",
        hours=20,
    )

    await harness.run([sichuan, yunnan])

    assert harness.partition() == {frozenset({"a"}), frozenset({"b"})}


async def test_copies_in_one_run_meet_within_the_run(harness: Harness) -> None:
    items = [
        make_item("w1", *RRR, source="reuters"),
        make_item(
            "w2",
            "PBOC lowers reserve ratio 50 basis points, releasing 1 trillion yuan",
            "China's central bank will lower the reserve requirement ratio by 50 "
            "basis points from March 10, freeing about 1 trillion yuan for banks.",
            source="bloomberg",
            hours=0.2,
        ),
    ]

    await harness.run(items)

    assert harness.partition() == {frozenset({"w1", "w2"})}


async def test_two_runs_cluster_as_one_run(harness: Harness, store_factory) -> None:
    items = quake_items() + [make_item("r", *RRR, hours=1.2)]

    await harness.run(items[:3], now=T0 + timedelta(hours=1))
    await harness.run(items[3:], now=T0 + timedelta(hours=3))
    split = harness.partition()

    other = store_factory(harness)
    await other.run(items, now=T0 + timedelta(hours=3))

    assert split == other.partition()
    assert split == {frozenset(f"q{k}" for k in range(6)), frozenset({"r"})}


async def test_rerunning_a_run_changes_nothing(harness: Harness) -> None:
    items = quake_items() + [make_item("r", *RRR, hours=1.2)]
    await harness.run(items)
    before = (harness.partition(), recent_stories(harness.store, since=T0))

    again = await harness.run(items)

    assert again.seen == len(items)
    assert again.stories_new == again.stories_updated == again.duplicates == 0
    assert (harness.partition(), recent_stories(harness.store, since=T0)) == before


async def test_story_keeps_members_times_and_coverage(harness: Harness) -> None:
    items = quake_items()[:3] + [make_item("r", *RRR, hours=2)]
    items[2].source = items[0].source

    await harness.run(items)

    stories = {s.member_ids[0]: s for s in recent_stories(harness.store, since=T0)}
    assert set(stories) == {"q0", "r"}
    quake = stories["q0"]
    assert quake.member_ids == ["q0", "q1", "q2"]
    assert quake.first_seen == T0
    assert quake.last_seen == T0 + timedelta(hours=1)
    assert quake.langs == ["en"]
    assert quake.sources == ["src-q0", "src-q1"]
    assert quake.coverage == 2
    assert quake.revision == 1


async def test_traditional_script_copy_meets_the_simplified_one(
    harness: Harness,
) -> None:
    items = [
        make_item(
            "z",
            "四川泸定县发生6.1级地震 已造成12人遇难",
            "四川泸定县发生6.1级地震，截至目前已造成12人遇难，85人受伤。",
            lang="zh",
            source="xinhua",
        ),
        make_item(
            "z2",
            "四川瀘定縣發生6.1級地震 已造成12人遇難",
            "四川瀘定縣發生6.1級地震，截至目前已造成12人遇難，85人受傷。",
            lang="zh",
            source="cna",
            hours=0.5,
        ),
    ]

    report = await harness.run(items)

    assert report.removed["exact"] == 1
    (story,) = recent_stories(harness.store, since=T0)
    assert story.member_ids == ["z", "z2"]
    assert story.langs == ["zh"]
    assert story.sources == ["xinhua", "cna"]


async def test_republished_item_with_new_guid_and_date_is_not_new(
    harness: Harness,
) -> None:
    original = make_item("a", *RRR, url="https://news.example/pboc?id=7")
    await harness.run([original])

    redated = make_item(
        "a-again",
        RRR[0],
        RRR[1],
        hours=30,
        keys=["url:news.example/pboc?id=7", "guid:news:new-guid"],
    )
    report = await harness.run([redated])

    assert report.removed["exact"] == 1
    assert report.stories_new == 0
    (story,) = recent_stories(harness.store, since=T0)
    assert story.member_ids == ["a", "a-again"]
    # A re-dated copy of a known article does not make the story recent again.
    assert story.last_seen == T0
    assert recent_stories(harness.store, since=T0 + timedelta(hours=1)) == []


async def test_wire_copy_with_small_edits_is_a_near_duplicate(harness: Harness) -> None:
    text = (
        "The People's Bank of China said on Monday it would cut the reserve "
        "requirement ratio for banks by 50 basis points from March 10, releasing "
        "about 1 trillion yuan of long-term liquidity to support the economy, "
        "which grew more slowly than expected in the last quarter of the year."
    )
    edited = text.replace("said on Monday", "announced on Monday").replace(
        "support the economy", "help the economy"
    )
    items = [
        make_item("w", RRR[0], text, source="reuters"),
        make_item("c", "Central bank cuts RRR", edited, source="scmp", hours=1),
    ]

    report = await harness.run(items)

    assert report.removed == {"exact": 0, "near": 1, "semantic": 0}


async def test_items_outside_the_window_start_a_new_story(harness: Harness) -> None:
    first = make_item("a", *QUAKE[0])
    late = make_item("b", *QUAKE[1], hours=80)

    await harness.run([first], now=first.published)
    await harness.run([late], now=late.published)

    assert harness.partition() == {frozenset({"a"}), frozenset({"b"})}


async def test_slow_story_without_new_facts_is_not_revised(harness: Harness) -> None:
    await harness.run(quake_items()[:2])

    day_two = make_item(
        "d2",
        "Sichuan earthquake: 12 dead after magnitude 6.1 quake in Luding",
        "The 6.1 magnitude earthquake that struck Luding county in Sichuan left 12 "
        "people dead and 85 injured, according to local officials.",
        hours=26,
    )
    report = await harness.run([day_two])

    (story,) = recent_stories(harness.store, since=T0 + timedelta(hours=24))
    assert story.member_ids == ["q0", "q1", "d2"]
    assert report.stories_updated == 1
    assert report.stories_revised == 0
    assert story.revision == 1
    assert not story.updated_with_new_facts


async def test_slow_story_with_new_facts_comes_back_as_an_update(
    harness: Harness,
) -> None:
    await harness.run(quake_items()[:2])

    day_two = make_item(
        "d2",
        "Sichuan earthquake death toll rises to 31, with 85 injured",
        "The death toll from the magnitude 6.1 earthquake in Luding county, Sichuan, "
        "rose to 31 on Tuesday, with 85 injured and 1,400 people relocated.",
        hours=26,
    )
    report = await harness.run([day_two], now=T0 + timedelta(hours=27))

    (story,) = recent_stories(harness.store, since=T0 + timedelta(hours=24))
    assert story.member_ids == ["q0", "q1", "d2"]
    assert report.stories_revised == 1
    assert story.revision == 2
    assert story.updated_with_new_facts
    # The run that learnt the new facts, not the member's publication time.
    assert story.revised_at == T0 + timedelta(hours=27)
    assert {"n:31", "n:1400"} <= set(story.new_facts)


async def test_pending_items_are_stored_items_without_a_story(
    harness: Harness,
) -> None:
    items = quake_items()[:3]
    harness.store.upsert_items(items)
    await harness.run(items[:1])

    left = pending_items(harness.store, since=T0 - timedelta(hours=1))

    assert [i.id for i in left] == ["q1", "q2"]


@pytest.fixture
def store_factory(tmp_path, served_upstash):
    """A second, empty store with an index of the same kind as `harness`."""
    from infra.store import Store
    from infra.vector import LocalVectorIndex, UpstashVectorIndex
    from tests.cluster.conftest import upstash_index

    stores = []

    def make(like: Harness) -> Harness:
        store = Store(f"sqlite:///{tmp_path / f'other{len(stores)}.db'}")
        stores.append(store)
        if isinstance(like.index, UpstashVectorIndex):
            # A second namespace keeps the two stores' vectors apart.
            index = upstash_index(served_upstash, store)
            index.namespace = "other"
            return Harness(store, index, settle=like.settle, config=like.config)
        return Harness(store, LocalVectorIndex(store), lambda: None, like.config)

    yield make
    for store in stores:
        store.close()
