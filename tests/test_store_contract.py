"""The store's contract, run against SQLite always and PostgreSQL when configured."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from functions.models import Item
from infra import readers
from infra.store import MIGRATIONS, Store


def make_item(n: int, *, source: str = "xinhua", title: str | None = None) -> Item:
    return Item(
        id=f"i{n:04d}",
        source=source,
        url=f"https://example.org/a/{n}",
        title=title or f"Headline {n} 标题",
        text=f"Body of article {n}. 正文。",
        lang="en",
        published=datetime(2025, 11, 14, 8, 0, tzinfo=UTC) + timedelta(minutes=n),
        guid=f"guid-{n}",
        content_hash=f"c{n}",
        title_hash=f"t{n}",
        keys=[f"url:https://example.org/a/{n}", f"guid:guid-{n}"],
    )


def test_fresh_store_is_at_the_latest_migration(any_store: Store) -> None:
    latest = max(version for version, _, _ in MIGRATIONS)

    assert any_store.migrate() == latest
    assert Store(any_store.url).migrate() == latest


def test_stores_opened_at_once_on_an_empty_database_all_start(store_url: str) -> None:
    """Cron job and webhook cold-starting together must not both create tables."""
    barrier = threading.Barrier(4)

    def open_one(_: int) -> int:
        barrier.wait()
        store = Store(store_url)
        try:
            return store.migrate()
        finally:
            store.close()

    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(open_one, range(4)))

    assert len(set(versions)) == 1


def test_upserting_the_same_items_twice_adds_nothing(any_store: Store) -> None:
    first = any_store.upsert_items([make_item(1), make_item(2)])
    second = any_store.upsert_items([make_item(1), make_item(2)])

    assert sorted(first.new) == ["i0001", "i0002"]
    assert second.new == [] and sorted(second.unchanged) == ["i0001", "i0002"]
    assert any_store.count_items() == 2


def test_an_item_known_by_any_key_is_updated_in_place(any_store: Store) -> None:
    any_store.upsert_items([make_item(1)])
    retitled = make_item(1, title="A new headline")
    retitled.id = "different-id"
    retitled.keys = ["guid:guid-1", "url:https://example.org/amp/1"]
    retitled.content_hash = "changed"

    result = any_store.upsert_items([retitled])

    assert result.updated == ["i0001"]
    assert [i.title for i in any_store.get_items(["i0001"])] == ["A new headline"]
    assert any_store.count_items() == 1


def test_datetimes_come_back_as_aware_utc(any_store: Store) -> None:
    any_store.upsert_items([make_item(3)])
    started = datetime(2025, 11, 14, 9, 30, tzinfo=UTC)
    any_store.save_run("run-1", "digest", "ok", {}, started, started)
    any_store.save_source_state("xinhua", last_success=started)

    item = any_store.list_items(since=started - timedelta(days=1))[0]
    run = any_store.recent_runs()[0]
    state = any_store.get_source_state("xinhua")

    assert item.published == datetime(2025, 11, 14, 8, 3, tzinfo=UTC)
    assert item.published.utcoffset() == timedelta(0)
    assert run["started_at"] == started and run["finished_at"] == started
    assert state["last_success"] == started


def test_run_reports_round_trip_as_json(any_store: Store) -> None:
    report = {
        "stages": {"collect": {"duration_s": 1.5, "count_out": 12}},
        "sources": [{"name": "人民网", "status": "ok", "new": 3}],
        "llm": {"cost_usd": 0.0125},
        "fallbacks": [],
    }
    started = datetime(2025, 11, 14, tzinfo=UTC)

    any_store.save_run("run-2", "collect", "running", {}, started)
    any_store.save_run("run-2", "collect", "ok", report, started, started)

    runs = any_store.recent_runs()
    assert len(runs) == 1
    assert runs[0]["status"] == "ok" and runs[0]["report"] == report


def test_recent_runs_are_newest_first_and_limited(any_store: Store) -> None:
    base = datetime(2025, 11, 14, tzinfo=UTC)
    for n in range(5):
        any_store.save_run(f"run-{n}", "collect", "ok", {}, base + timedelta(hours=n))

    runs = any_store.recent_runs(limit=3)

    assert [r["id"] for r in runs] == ["run-4", "run-3", "run-2"]


def test_source_state_is_created_then_updated(any_store: Store) -> None:
    any_store.save_source_state("caixin", consecutive_failures=1, last_error="timeout")
    any_store.save_source_state("caixin", consecutive_failures=2)

    state = any_store.get_source_state("caixin")

    assert state["consecutive_failures"] == 2 and state["last_error"] == "timeout"
    assert any_store.get_source_state("unknown")["consecutive_failures"] == 0
    assert [s["name"] for s in any_store.all_source_states()] == ["caixin"]


def test_readers_are_saved_listed_and_removed(any_store: Store) -> None:
    saved = readers.save_reader(
        any_store, readers.Reader(id="", chat_id="1001", topics=["trade"])
    )
    readers.save_reader(any_store, readers.Reader(id="", chat_id="1002", lang="zh"))
    readers.set_active(any_store, saved.id, False)

    active = readers.list_readers(any_store, active_only=True)
    found = readers.get_reader(any_store, chat_id=1001)

    assert [r.chat_id for r in active] == ["1002"]
    assert found is not None and found.topics == ["trade"] and not found.active
    assert readers.remove_reader(any_store, 1001)
    assert readers.get_reader(any_store, chat_id=1001) is None


@pytest.mark.parametrize("writers", [4])
def test_concurrent_writers_all_land(any_store: Store, writers: int) -> None:
    """Separate engines writing at once queue up instead of failing."""
    barrier = threading.Barrier(writers)

    def write(n: int) -> int:
        store = Store(any_store.url)
        try:
            barrier.wait()
            batch = [make_item(n * 100 + k, source=f"s{n}") for k in range(20)]
            return len(store.upsert_items(batch).new)
        finally:
            store.close()

    with ThreadPoolExecutor(writers) as pool:
        added = list(pool.map(write, range(writers)))

    assert added == [20] * writers
    assert any_store.count_items() == 20 * writers
