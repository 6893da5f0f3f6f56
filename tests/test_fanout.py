"""Who is due this hour, the batches, and how their reports merge."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from functions import fanout
from infra import db
from infra.readers import Reader, save_reader
from infra.store import Store


def reader(
    chat_id: str, tz: str = "Asia/Shanghai", hour: int = 8, lang: str = "en"
) -> Reader:
    return Reader(
        id=f"r{chat_id}", chat_id=chat_id, timezone=tz, delivery_hour=hour, lang=lang
    )


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "now", "due"),
    [
        pytest.param("Asia/Shanghai", "2025-11-14T00:00", True, id="beijing-8am"),
        pytest.param("Asia/Shanghai", "2025-11-13T23:00", False, id="beijing-7am"),
        pytest.param("Asia/Shanghai", "2025-11-14T02:00", True, id="beijing-catch-up"),
        pytest.param("Asia/Shanghai", "2025-11-14T03:00", False, id="beijing-too-late"),
        pytest.param("Asia/Kolkata", "2025-11-14T02:00", False, id="kolkata-7.30"),
        pytest.param("Asia/Kolkata", "2025-11-14T03:00", True, id="kolkata-8.30"),
        pytest.param("Europe/Berlin", "2025-11-14T07:00", True, id="berlin-8am"),
        pytest.param("Not/AZone", "2025-11-14T08:00", True, id="unknown-zone-is-utc"),
    ],
)
def test_readers_are_due_from_their_local_hour(tz: str, now: str, due: bool) -> None:
    assert fanout.is_due(reader("1", tz), utc(now), catchup_hours=3) is due


def test_an_hour_skipped_by_daylight_saving_is_caught_up() -> None:
    """On 9 March 2025 New York has no 02:00; the 03:00 run serves the reader."""
    early_riser = reader("1", "America/New_York", hour=2)

    due = [
        hour
        for hour in range(24)
        if fanout.is_due(
            early_riser, utc("2025-03-09T00:00") + timedelta(hours=hour), 3
        )
    ]

    assert due == [7, 8]


def test_the_plan_skips_inactive_and_recently_served_readers(store: Store) -> None:
    for r in [reader("1"), reader("2"), reader("3"), reader("4", hour=9)]:
        save_reader(store, r)
    save_reader(store, Reader(id="r5", chat_id="5", active=False))
    now = utc("2025-11-14T00:30")
    with store.begin() as conn:
        conn.execute(
            insert(db.deliveries).values(
                reader_id="r2",
                edition="2025-11-14",
                part=0,
                status="sent",
                story_ids=[],
                updated_at=now - timedelta(minutes=20),
            )
        )

    plan = fanout.plan_delivery(store, now, batch_size=10)

    assert plan.due == ["r1", "r3"]
    assert plan.batches == [["r1", "r3"]]


def test_the_first_batch_holds_one_reader_per_language() -> None:
    readers = [reader(str(n)) for n in range(5)] + [
        reader("zh1", lang="zh"),
        reader("zh2", lang="zh"),
    ]

    batches = fanout.plan_batches(readers, 3)

    assert batches[0] == ["r0", "rzh1", "r1"]
    assert sorted(sum(batches, [])) == sorted(r.id for r in readers)
    assert all(len(b) <= 3 for b in batches)


def test_the_pilot_batch_runs_before_the_others() -> None:
    order: list[str] = []

    def deliver(batch: list[str]) -> dict[str, Any]:
        order.append(f"pilot:{batch[0]}")
        return {"digests": len(batch)}

    def map_rest(batches: list[list[str]]) -> list[dict[str, Any] | BaseException]:
        order.append(f"rest:{len(batches)}")
        return [{"digests": len(b)} for b in batches[:-1]] + [RuntimeError("429")]

    reports = fanout.run_batches([["a"], ["b"], ["c", "d"]], deliver, map_rest)

    assert order == ["pilot:a", "rest:2"]
    assert reports[:2] == [{"digests": 1}, {"digests": 1}]
    assert reports[2]["status"] == "failed" and reports[2]["readers_failed"] == 2


def test_local_batches_run_in_parallel_within_the_bound() -> None:
    in_flight, peak, lock = 0, 0, threading.Lock()
    pair = threading.Barrier(2, timeout=10)

    def deliver(batch: list[str]) -> dict[str, Any]:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        pair.wait()  # breaks unless two batches really run at once
        with lock:
            in_flight -= 1
        return {"digests": len(batch)}

    results = fanout.map_locally(deliver, concurrency=2)([["a"], ["b"], ["c"], ["d"]])

    assert results == [{"digests": 1}] * 4
    assert peak == 2


def test_batch_reports_merge_into_one_run_report() -> None:
    reports = [
        {
            "status": "ok",
            "digests": 3,
            "deliveries": {"sent": 6, "failed": 0, "skipped": 1},
            "llm": {
                "calls": 4,
                "cost_usd": 0.01,
                "providers": {"deepseek": {"calls": 4}},
            },
            "fallbacks": [],
            "budget": {"month_to_date_usd": 2.0, "budget_usd": 50.0},
        },
        {
            "status": "degraded",
            "digests": 2,
            "deliveries": {"sent": 4, "failed": 1, "skipped": 0},
            "llm": {"calls": 1, "cost_usd": 0.005, "providers": {"qwen": {"calls": 1}}},
            "fallbacks": [{"kind": "provider", "detail": "deepseek -> qwen"}],
            "budget": {"month_to_date_usd": 2.1, "budget_usd": 50.0},
        },
        {"status": "failed", "error": "RuntimeError: 429", "readers_failed": 50},
    ]

    merged = fanout.merge_reports(reports)

    assert merged["status"] == "degraded"
    assert merged["digests"] == 5
    assert merged["deliveries"] == {"sent": 10, "failed": 1, "skipped": 1}
    assert merged["llm"]["calls"] == 5
    assert merged["llm"]["cost_usd"] == pytest.approx(0.015)
    assert merged["llm"]["providers"] == {
        "deepseek": {"calls": 4},
        "qwen": {"calls": 1},
    }
    assert merged["fallbacks"] == [{"kind": "provider", "detail": "deepseek -> qwen"}]
    assert merged["budget"]["month_to_date_usd"] == 2.1
    assert merged["error"] == "RuntimeError: 429"
    assert merged["readers_failed"] == 50 and merged["batches"] == 3


def test_every_batch_failing_fails_the_run() -> None:
    merged = fanout.merge_reports([{"status": "failed"}, {"status": "failed"}])

    assert merged["status"] == "failed"
