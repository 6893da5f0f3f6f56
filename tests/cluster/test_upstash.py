"""The real upstash-vector SDK against the fake Upstash REST server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import numpy as np
import pytest

from functions.cluster import cluster_items, recent_stories
from infra import db
from infra.config import Settings
from infra.store import Store
from infra.vector import (
    IndexUnavailable,
    LocalVectorIndex,
    UpstashVectorIndex,
    VectorDoc,
    Window,
    build_index,
)
from tests.cluster.conftest import (
    T0,
    Harness,
    cluster_config,
    make_item,
    upstash_index,
)
from tests.cluster.test_stories import QUAKE, RRR, quake_items
from tests.fakes.upstash import ServedFake

ZH_QUAKE = (
    "四川泸定县发生6.1级地震 已造成12人遇难",
    "据中国地震台网测定，四川泸定县发生6.1级地震，截至目前已造成12人遇难，85人受伤，"
    "救援工作正在进行。",
)


def upstash_harness(upstash: ServedFake, store: Store, **kwargs: object) -> Harness:
    index = upstash_index(upstash, store, **kwargs)  # type: ignore[arg-type]
    return Harness(store, index, settle=upstash.fake.settle)


def synced(store: Store) -> dict[str, bool]:
    with store.begin() as conn:
        rows = conn.execute(db.story_members.select()).all()
    return {r.item_id: r.synced for r in rows}


def doc(
    id: str, text: str, hours: float, lang: str = "en", story: str = "s"
) -> VectorDoc:
    return VectorDoc(
        id=id,
        text=text,
        lang=lang,
        source="src",
        published=T0 + timedelta(hours=hours),
        story_id=story,
        title=text[:20],
    )


# The index itself -------------------------------------------------------------------


async def test_vectors_carry_story_source_language_and_time(
    upstash: ServedFake, store: Store
) -> None:
    h = upstash_harness(upstash, store)
    await h.run(quake_items()[:2])

    stored = upstash.fake.stored()
    assert set(stored) == {"q0", "q1"}
    story = h.story_of("q0")
    assert stored["q1"].metadata == {
        "story": story,
        "source": "src-q1",
        "lang": "en",
        "ts": int((T0 + timedelta(hours=0.5)).timestamp()),
        "title": QUAKE[1][0],
    }
    assert stored["q1"].data.startswith(QUAKE[1][0])
    assert synced(store) == {"q0": True, "q1": True}


async def test_search_filters_by_time_language_and_story(
    upstash: ServedFake, store: Store
) -> None:
    index = upstash_index(upstash, store)
    await index.open()
    docs = [
        doc("old", "earthquake in Sichuan kills 12", -100),
        doc("en", "earthquake in Sichuan kills 12 people", 0),
        doc("zh", "四川地震 12人遇难", 1, lang="zh"),
        doc("running", "earthquake in Sichuan kills 12 people", 1, story=""),
    ]
    vectors = await index.embed(docs)
    upstash.fake.settle()

    window = Window(T0 - timedelta(hours=72), T0 + timedelta(hours=72))
    (everyone,) = await index.search(vectors[:1], [window], top_k=10, min_score=-1)
    (chinese,) = await index.search(
        vectors[:1],
        [Window(window.since, window.until, "zh")],
        top_k=10,
        min_score=-1,
    )

    assert {n.id for n in everyone} == {"en", "zh"}
    assert [n.id for n in chinese] == ["zh"]
    sent = [body for path, body in upstash.fake.calls if path == "/query"]
    assert "lang = 'zh'" in sent[-1]["filter"]
    assert f"ts >= {int(window.since.timestamp())}" in sent[-1]["filter"]


async def test_new_vectors_are_fetchable_before_they_are_queryable(
    upstash: ServedFake, store: Store
) -> None:
    index = upstash_index(upstash, store)
    await index.open()
    vectors = await index.embed([doc("a", "earthquake in Sichuan", 0)])

    window = Window(T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    before = await index.search(vectors, [window], top_k=5, min_score=-1)
    upstash.fake.settle()
    after = await index.search(vectors, [window], top_k=5, min_score=-1)

    assert before == [[]]
    assert [n.id for n in after[0]] == ["a"]
    assert set(await index.vectors(["a", "missing"])) == {"a"}


async def test_scores_are_cosine_similarities(
    upstash: ServedFake, store: Store
) -> None:
    index = upstash_index(upstash, store)
    await index.open()
    docs = [doc("a", "earthquake in Sichuan", 0), doc("b", "central bank cuts", 0)]
    vectors = await index.embed(docs)
    upstash.fake.settle()

    window = Window(T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    (found,) = await index.search(vectors[:1], [window], top_k=5, min_score=-1)

    scores = {n.id: n.score for n in found}
    assert scores["a"] == pytest.approx(1.0, abs=1e-6)
    assert scores["b"] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-6)


async def test_vectors_older_than_the_window_are_deleted(
    upstash: ServedFake, store: Store
) -> None:
    h = upstash_harness(upstash, store)
    await h.run([make_item("old", *QUAKE[0])])

    report = await h.run([make_item("new", *RRR, hours=80)])

    assert report.pruned == 1
    assert set(upstash.fake.stored()) == {"new"}
    deletes = [body for path, body in upstash.fake.calls if path == "/delete"]
    cutoff = int((T0 + timedelta(hours=80 - 72)).timestamp())
    assert deletes[-1] == {"filter": f"ts < {cutoff}"}


async def test_info_names_the_embedding_model(
    upstash: ServedFake, store: Store
) -> None:
    index = upstash_index(upstash, store)

    assert await index.open() == "upstash:BGE_M3"
    info = await index.info()

    assert info["similarity"] == "COSINE"
    assert info["embedder"] == "upstash:BGE_M3"


# Across languages -----------------------------------------------------------------


async def test_english_wire_and_chinese_report_meet_through_the_production_index(
    upstash: ServedFake, store: Store
) -> None:
    h = upstash_harness(upstash, store)
    await h.run([make_item("en", *QUAKE[0], source="reuters")])

    await h.run([make_item("zh", *ZH_QUAKE, lang="zh", source="xinhua", hours=1)])

    (story,) = recent_stories(store, since=T0)
    assert story.member_ids == ["en", "zh"]
    assert story.langs == ["en", "zh"]
    assert h.reports[-1].removed["semantic"] == 1


async def test_english_and_chinese_in_one_run_meet_too(
    upstash: ServedFake, store: Store
) -> None:
    h = upstash_harness(upstash, store)
    items = [
        make_item("en", *QUAKE[0], source="reuters"),
        make_item("zh", *ZH_QUAKE, lang="zh", source="xinhua", hours=1),
    ]

    await h.run(items)

    assert h.partition() == {frozenset({"en", "zh"})}


async def test_lexical_local_index_cannot_match_across_languages(
    store: Store,
) -> None:
    h = Harness(store, LocalVectorIndex(store), settle=lambda: None)
    items = [
        make_item("en", *QUAKE[0], source="reuters"),
        make_item("zh", *ZH_QUAKE, lang="zh", source="xinhua", hours=1),
    ]

    await h.run(items)

    assert h.partition() == {frozenset({"en"}), frozenset({"zh"})}


# When Upstash fails -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        pytest.param("/info", "error", id="info-error-body"),
        pytest.param("/upsert-data", "500", id="upsert-non-json-500"),
        pytest.param("/fetch", "timeout", id="fetch-timeout"),
        pytest.param("/query", "error", id="query-error-body"),
        pytest.param("/query", "timeout", id="query-timeout"),
    ],
)
async def test_a_failing_upstash_falls_back_to_the_local_index(
    upstash: ServedFake, store: Store, path: str, kind: str
) -> None:
    h = upstash_harness(upstash, store, timeout_s=0.3)
    upstash.fake.fail(path, kind)

    report = await h.run(quake_items())

    assert report.fallback is not None
    assert report.fallback.startswith("upstash:")
    assert report.index == "local:hashing-v1"
    assert h.partition() == {frozenset(f"q{k}" for k in range(6))}
    assert not any(synced(store).values())
    with store.begin() as conn:
        local = conn.execute(db.cluster_vectors.select()).all()
    assert {r.item_id for r in local} == {f"q{k}" for k in range(6)}


async def test_a_timeout_is_reported_as_such(upstash: ServedFake, store: Store) -> None:
    h = upstash_harness(upstash, store, timeout_s=0.2)
    upstash.fake.fail("/query", "timeout")

    report = await h.run(quake_items()[:2])

    assert report.fallback is not None
    assert "TimeoutError" in report.fallback


async def test_items_of_a_fallback_run_are_caught_up_and_found_next_run(
    upstash: ServedFake, store: Store
) -> None:
    h = upstash_harness(upstash, store)
    upstash.fake.fail("/info", "error")
    first = await h.run(quake_items()[:2])
    assert first.fallback is not None
    assert upstash.fake.stored() == {}

    second = await h.run([make_item("q2", *QUAKE[2], hours=3)])

    assert second.fallback is None
    assert second.synced == 2
    assert h.partition() == {frozenset({"q0", "q1", "q2"})}
    stored = upstash.fake.stored()
    assert {i: r.metadata["story"] for i, r in stored.items()} == dict.fromkeys(
        ["q0", "q1", "q2"], h.story_of("q0")
    )
    assert all(synced(store).values())


async def test_a_failed_final_upsert_waits_for_the_next_run(
    upstash: ServedFake, store: Store
) -> None:
    h = upstash_harness(upstash, store)
    # The first upsert embeds the texts; the second, with story ids, fails.
    upstash.fake.fail("/upsert-data", "error", after=1)

    first = await h.run(quake_items()[:2])

    assert first.fallback is not None
    assert "wait for the next run" in first.notes[0]
    assert synced(store) == {"q0": False, "q1": False}
    assert {r.metadata["story"] for r in upstash.fake.stored().values()} == {""}

    second = await h.run([make_item("r", *RRR, hours=2)])

    assert second.synced == 2
    assert all(synced(store).values())
    assert upstash.fake.stored()["q0"].metadata["story"] == h.story_of("q0")


async def test_a_wrong_token_falls_back_without_leaking_it(
    upstash: ServedFake, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-wrong-token-0123456789abcdef"
    h = upstash_harness(upstash, store, token=secret)

    with caplog.at_level(logging.DEBUG):
        report = await h.run(quake_items()[:2])

    assert report.fallback is not None
    assert "Unauthorized" in report.fallback
    assert secret not in json.dumps(report.as_dict())
    assert secret not in caplog.text


async def test_without_a_fallback_the_failure_is_raised(
    upstash: ServedFake, store: Store
) -> None:
    index = UpstashVectorIndex(upstash.url, upstash.fake.token, retries=0)
    upstash.fake.fail("/info", "error")

    with pytest.raises(IndexUnavailable, match="injected failure"):
        await cluster_items(
            store, index, quake_items()[:1], now=T0, config=cluster_config()
        )


def test_build_index_uses_upstash_only_when_configured(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(build_index(Settings(), store), LocalVectorIndex)

    monkeypatch.setenv("UPSTASH_VECTOR_REST_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("UPSTASH_VECTOR_REST_TOKEN", "token")
    index = build_index(Settings(), store)

    assert isinstance(index, UpstashVectorIndex)
    assert isinstance(index.fallback, LocalVectorIndex)


async def test_unreachable_upstash_falls_back(store: Store) -> None:
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    index = UpstashVectorIndex(
        "http://127.0.0.1:9",
        "token",
        retries=0,
        timeout_s=1.0,
        fallback=LocalVectorIndex(store),
    )

    report = await cluster_items(
        store, index, quake_items()[:2], now=T0, config=cluster_config()
    )

    assert report.fallback is not None
    assert "ConnectError" in report.fallback
    assert np.isfinite(report.seconds)
