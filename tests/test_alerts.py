"""Alerts: what a run report and the stored history raise, and how often it is sent."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra import readers
from infra.alerts import Alert, console_sender, dispatch_alerts, evaluate_alerts
from infra.store import Store

NOW = datetime(2025, 11, 14, 12, 0, tzinfo=UTC)
BOT_URL = "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"


def save(
    store: Store, run_id: str, kind: str, hours_ago: float, **report: Any
) -> dict[str, Any]:
    """Store a finished run and return its report, as the job wrapper does."""
    status = report.setdefault("status", "ok")
    report.update(run_id=run_id, kind=kind)
    started = NOW - timedelta(hours=hours_ago)
    store.save_run(run_id, kind, status, report, started, started)
    return report


def keys(alerts: list[Alert]) -> list[str]:
    return [a.key for a in alerts]


def test_a_clean_run_raises_nothing(any_store: Store) -> None:
    report = save(
        any_store,
        "c1",
        "collect",
        0,
        sources=[{"name": "xinhua", "status": "ok", "new": 4}],
        items_new=4,
    )

    assert evaluate_alerts(any_store, report, now=NOW) == []


def test_a_failed_run_names_its_stage_and_hides_secrets(any_store: Store) -> None:
    report = save(
        any_store,
        "d1",
        "digest",
        0,
        status="failed",
        stages={"rank": {"status": "ok"}, "deliver": {"status": "failed"}},
        error=f"ConnectError for {BOT_URL}/sendMessage",
    )

    [alert] = evaluate_alerts(any_store, report, now=NOW)

    assert alert.key == "run-failed:digest" and alert.severity == "critical"
    assert "d1 failed in stage deliver" in alert.text
    assert "AAHdqTcv" not in alert.text and "/bot[redacted]/" in alert.text


def test_the_run_after_a_failure_reports_recovery(any_store: Store) -> None:
    save(any_store, "d1", "digest", 1, status="failed", error="boom")
    report = save(any_store, "d2", "digest", 0, readers_due=0)

    assert keys(evaluate_alerts(any_store, report, now=NOW)) == ["run-recovered:digest"]


def test_fallbacks_make_a_degraded_alert_each(any_store: Store) -> None:
    report = save(
        any_store,
        "c1",
        "collect",
        0,
        status="degraded",
        fallbacks=[
            {"kind": "provider", "detail": "deepseek -> qwen (503)"},
            {"kind": "vector_index", "detail": "upstash timeout; local index"},
        ],
    )

    alerts = evaluate_alerts(any_store, report, now=NOW)

    assert keys(alerts) == ["degraded:llm-fallback", "degraded:vector-index"]
    assert "deepseek -> qwen (503)" in alerts[0].text


@pytest.mark.parametrize(
    ("earlier_failures", "alerted"),
    [
        pytest.param(1, False, id="two-in-a-row"),
        pytest.param(2, True, id="three-in-a-row"),
    ],
)
def test_a_source_failing_three_runs_in_a_row_is_reported(
    any_store: Store, earlier_failures: int, alerted: bool
) -> None:
    failing = {"name": "caixin", "status": "failed", "error": "HTTP 503"}
    save(any_store, "c0", "collect", 10, sources=[{"name": "caixin", "status": "ok"}])
    for n in range(earlier_failures):
        save(any_store, f"c{n + 1}", "collect", 9 - n, sources=[failing])
    report = save(any_store, "now", "collect", 0, sources=[failing])

    alerts = evaluate_alerts(any_store, report, now=NOW)

    assert ("source-failing:caixin" in keys(alerts)) is alerted


def test_the_stored_failure_count_counts_without_history(any_store: Store) -> None:
    any_store.save_source_state("rfi-zh", consecutive_failures=5)
    report = save(
        any_store, "c1", "collect", 0, sources=[{"name": "rfi-zh", "status": "blocked"}]
    )

    [alert] = evaluate_alerts(any_store, report, now=NOW)

    assert alert.key == "source-failing:rfi-zh" and "5 runs in a row" in alert.text


def test_a_stale_source_is_reported(any_store: Store) -> None:
    report = save(
        any_store, "c1", "collect", 0, sources=[{"name": "people", "status": "stale"}]
    )

    assert keys(evaluate_alerts(any_store, report, now=NOW)) == ["source-stale:people"]


def test_due_readers_without_a_digest_is_silence(any_store: Store) -> None:
    report = save(any_store, "d1", "digest", 0, readers_due=3, digests=0)

    [alert] = evaluate_alerts(any_store, report, now=NOW)

    assert alert.key == "silence:no-digest" and "3 readers due" in alert.text


@pytest.mark.parametrize(
    ("broken_before", "alerted"),
    [pytest.param(0, False, id="once"), pytest.param(1, True, id="twice")],
)
def test_summaries_failing_run_after_run_is_silence(
    any_store: Store, broken_before: int, alerted: bool
) -> None:
    broken = {"stages": {"summarize": {"status": "failed"}}, "digests": 4}
    save(any_store, "d0", "digest", 5, digests=4, summaries={"llm": 8})
    for n in range(broken_before):
        save(any_store, f"d{n + 1}", "digest", 4 - n, **broken)
    report = save(
        any_store,
        "now",
        "digest",
        0,
        digests=4,
        summaries={"llm": 0, "fallback": 8},
    )

    alerts = evaluate_alerts(any_store, report, now=NOW)

    assert ("silence:summaries" in keys(alerts)) is alerted


@pytest.mark.parametrize("with_readers", [True, False], ids=["readers", "no-readers"])
def test_a_day_without_any_digest_is_silence(
    any_store: Store, with_readers: bool
) -> None:
    if with_readers:
        readers.save_reader(any_store, readers.Reader(id="", chat_id="1001"))
    save(any_store, "d1", "digest", 30, digests=5)
    save(any_store, "d2", "digest", 20, digests=0, readers_due=0)
    report = save(any_store, "c1", "collect", 0, items_new=7)

    alerts = evaluate_alerts(any_store, report, now=NOW)

    assert ("silence:no-digest" in keys(alerts)) is with_readers
    if with_readers:
        assert "no digest produced for 30 hours" in alerts[0].text


@pytest.mark.parametrize(
    ("spent", "expected"),
    [
        pytest.param(10.0, [], id="under"),
        pytest.param(31.0, ["budget-soft:2025-11"], id="soft"),
        pytest.param(50.0, ["budget-hard:2025-11"], id="hard"),
    ],
)
def test_budget_lines(any_store: Store, spent: float, expected: list[str]) -> None:
    report = save(
        any_store,
        "d1",
        "digest",
        0,
        digests=2,
        budget={"month_to_date_usd": spent, "budget_usd": 50.0, "soft_ratio": 0.6},
    )

    assert keys(evaluate_alerts(any_store, report, now=NOW)) == expected


def test_an_outage_sends_one_message_per_window(any_store: Store) -> None:
    sent: list[str] = []
    alert = Alert("run-failed:digest", "critical", "digest run failed")

    counts = [
        dispatch_alerts(any_store, [alert], sent.append, now=NOW + timedelta(hours=h))
        for h in (0, 1, 2, 5.9, 6.1)
    ]

    assert counts == [1, 0, 0, 0, 1]
    assert sent == ["🔴 digest run failed"] * 2


def test_keys_are_limited_independently(any_store: Store) -> None:
    sent: list[str] = []
    alerts = [
        Alert("source-failing:a", "warning", "a"),
        Alert("source-failing:b", "warning", "b"),
    ]

    first = dispatch_alerts(any_store, alerts, sent.append, now=NOW)
    second = dispatch_alerts(any_store, alerts, sent.append, now=NOW)

    assert (first, second) == (2, 0)


def test_an_alert_that_could_not_be_sent_is_tried_again(any_store: Store) -> None:
    alert = Alert("run-failed:collect", "critical", "collect failed")

    def broken(text: str) -> None:
        raise ConnectionError("telegram down")

    sent: list[str] = []
    assert dispatch_alerts(any_store, [alert], broken, now=NOW) == 0
    assert dispatch_alerts(any_store, [alert], sent.append, now=NOW) == 1


def test_concurrent_dispatchers_send_once(any_store: Store) -> None:
    sent: list[str] = []
    barrier = threading.Barrier(4)
    alert = Alert("silence:no-digest", "critical", "no digest")

    def dispatch(_: int) -> int:
        store = Store(any_store.url)
        try:
            barrier.wait()
            return dispatch_alerts(store, [alert], sent.append)
        finally:
            store.close()

    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(dispatch, range(4)))

    assert sorted(counts) == [0, 0, 0, 1] and len(sent) == 1


def test_the_console_sender_prints_the_alert() -> None:
    out = io.StringIO()

    console_sender(out)("🟠 source x is stale")

    assert out.getvalue() == "ALERT 🟠 source x is stale\n"
