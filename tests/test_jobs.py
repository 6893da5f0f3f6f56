"""The scheduled-job wrapper: lease, report, alerts, Sentry, fan-out, health."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from functions import jobs
from infra import lease, telemetry
from infra.config import Settings
from infra.readers import Reader, save_reader
from infra.store import Store
from tests.fake_sentry import FakeSentry

NOW = datetime(2025, 11, 14, 0, 5, tzinfo=UTC)  # 08:05 in Beijing


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {"DIGEST_DB": str(tmp_path / "state.db"), "DIGEST_DELIVERY_BATCH": 2}
    )


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    fake = FakeSentry().start()
    yield fake
    telemetry.shutdown()
    fake.stop()


def test_a_job_stores_its_report_and_frees_its_lease(
    settings: Settings, any_store: Store
) -> None:
    def collect(_: Settings) -> dict[str, Any]:
        assert lease.holder_of(any_store, "job:collect") == "call-1"
        return {"items_new": 12, "stories": 4}

    report = jobs.collect_job(
        settings, collect=collect, store=any_store, holder="call-1"
    )

    [run] = any_store.recent_runs()
    assert run["id"] == report["run_id"] and run["id"].startswith("collect-")
    assert run["kind"] == "collect" and run["status"] == "ok"
    assert run["report"]["items_new"] == 12
    assert lease.holder_of(any_store, "job:collect") is None


def test_an_overlapping_run_is_skipped(settings: Settings, any_store: Store) -> None:
    lease.acquire(any_store, "job:collect", 600, "slow-run")
    called: list[bool] = []

    report = jobs.collect_job(
        settings, collect=lambda _: called.append(True) or {}, store=any_store
    )

    assert report["status"] == "skipped" and called == []
    assert any_store.recent_runs()[0]["status"] == "skipped"


def test_a_failed_job_is_stored_alerted_and_raised(
    settings: Settings, any_store: Store
) -> None:
    token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
    alerts: list[str] = []

    def collect(_: Settings) -> dict[str, Any]:
        raise ConnectionError(f"https://api.telegram.org/bot{token}/getMe timed out")

    with pytest.raises(ConnectionError):
        jobs.collect_job(settings, collect=collect, store=any_store, send=alerts.append)

    [run] = any_store.recent_runs()
    assert run["status"] == "failed"
    assert run["report"]["error"].startswith("ConnectionError: https://api.telegram")
    assert token not in run["report"]["error"]
    assert len(alerts) == 1 and "collect run" in alerts[0] and token not in alerts[0]
    assert lease.holder_of(any_store, "job:collect") is None


def test_a_job_with_fallbacks_is_degraded(settings: Settings, any_store: Store) -> None:
    alerts: list[str] = []
    fallback = {"kind": "vector_index", "detail": "upstash timeout"}

    report = jobs.collect_job(
        settings,
        collect=lambda _: {"fallbacks": [fallback]},
        store=any_store,
        send=alerts.append,
    )

    assert report["status"] == "degraded"
    assert len(alerts) == 1 and "vector index fallback" in alerts[0]


def add_readers(store: Store) -> None:
    for n, lang in enumerate(["en", "en", "zh", "en", "en"]):
        save_reader(store, Reader(id=f"r{n}", chat_id=str(1000 + n), lang=lang))
    save_reader(store, Reader(id="late", chat_id="2000", delivery_hour=20))


def test_the_digest_job_delivers_due_readers_in_batches(
    settings: Settings, any_store: Store
) -> None:
    add_readers(any_store)
    calls: list[list[str]] = []

    def build(_: Settings, *, now: datetime, reader_ids: list[str]) -> dict[str, Any]:
        assert now == NOW
        calls.append(reader_ids)
        return {"digests": len(reader_ids), "deliveries": {"sent": len(reader_ids)}}

    report = jobs.digest_job(settings, now=NOW, deliver=build, store=any_store)

    assert calls[0] == ["r0", "r2"]
    assert sorted(sum(calls, [])) == ["r0", "r1", "r2", "r3", "r4"]
    assert report["readers_due"] == 5 and report["digests"] == 5
    assert report["deliveries"]["sent"] == 5 and report["batches"] == 3


class FakeModalFunction:
    """The one method of `modal.Function` the digest job uses to fan out."""

    def __init__(self, build: Any) -> None:
        self.build = build
        self.calls: list[dict[str, Any]] = []

    def map(
        self,
        batches: list[list[str]],
        *,
        kwargs: dict[str, Any],
        return_exceptions: bool,
    ) -> Iterator[Any]:
        self.calls.append({"batches": batches, **kwargs, "exc": return_exceptions})
        for batch in batches:
            yield self.build(None, now=kwargs["now"], reader_ids=batch)


def test_the_digest_job_fans_out_through_modal_map(
    settings: Settings, any_store: Store
) -> None:
    add_readers(any_store)

    def build(_: Any, *, now: datetime, reader_ids: list[str]) -> dict[str, Any]:
        return {"digests": len(reader_ids)}

    remote = FakeModalFunction(build)

    report = jobs.digest_job(
        settings, now=NOW, deliver=build, remote_batch=remote, store=any_store
    )

    [call] = remote.calls
    assert call["batches"] == [["r1", "r3"], ["r4"]]
    assert call["now"] == NOW and call["run_id"] == report["run_id"]
    assert call["exc"] is True
    assert report["digests"] == 5


def test_a_quiet_hour_delivers_nothing_and_raises_nothing(
    settings: Settings, any_store: Store
) -> None:
    add_readers(any_store)
    alerts: list[str] = []

    report = jobs.digest_job(
        settings,
        now=NOW + timedelta(hours=5),
        deliver=lambda *a, **k: pytest.fail("nobody is due"),
        store=any_store,
        send=alerts.append,
    )

    assert report["readers_due"] == 0 and report["status"] == "ok" and alerts == []


@pytest.mark.parametrize(
    ("monitors", "slugs"),
    [
        pytest.param("digest", {"china-to-watch-digest"}, id="default"),
        pytest.param(
            "digest,collect",
            {"china-to-watch-digest", "china-to-watch-collect"},
            id="opt-in",
        ),
    ],
)
def test_the_digest_job_has_a_cron_monitor_and_others_opt_in(
    tmp_path: Path, any_store: Store, sentry: FakeSentry, monitors: str, slugs: set[str]
) -> None:
    settings = Settings.model_validate(
        {
            "DIGEST_DB": str(tmp_path / "state.db"),
            "SENTRY_DSN": sentry.dsn,
            "DIGEST_SENTRY_MONITORS": monitors,
        }
    )

    jobs.collect_job(settings, collect=lambda _: {}, store=any_store)
    jobs.digest_job(settings, now=NOW, deliver=lambda *a, **k: {}, store=any_store)

    checkins = sentry.items("check_in")
    assert {c["monitor_slug"] for c in checkins} == slugs
    digest = [c for c in checkins if c["monitor_slug"] == "china-to-watch-digest"]
    assert [c["status"] for c in digest] == ["in_progress", "ok"]
    assert digest[0]["monitor_config"]["schedule"]["value"] == "0 * * * *"
    assert digest[0]["monitor_config"]["max_runtime"] == 45


def test_a_failed_job_reaches_sentry_with_its_run_id(
    tmp_path: Path, any_store: Store, sentry: FakeSentry
) -> None:
    settings = Settings.model_validate(
        {"DIGEST_DB": str(tmp_path / "state.db"), "SENTRY_DSN": sentry.dsn}
    )

    def build(*_: Any, **__: Any) -> dict[str, Any]:
        raise RuntimeError("ranking exploded")

    add_readers(any_store)

    with pytest.raises(jobs.JobFailed, match="ranking exploded"):
        jobs.digest_job(settings, now=NOW, deliver=build, store=any_store)

    [run] = any_store.recent_runs()
    assert run["status"] == "failed"
    events = sentry.items("event")
    assert events and {e["tags"]["run_id"] for e in events} == {run["id"]}
    assert "ranking exploded" in events[0]["exception"]["values"][0]["value"]
    assert [c["status"] for c in sentry.items("check_in")] == ["in_progress", "error"]


def test_health_reports_late_and_failed_jobs(any_store: Store) -> None:
    assert jobs.health(any_store, NOW)[0] is False

    any_store.save_run("c1", "collect", "ok", {}, NOW - timedelta(hours=2))
    any_store.save_run("d1", "digest", "ok", {}, NOW - timedelta(minutes=5))
    healthy, body = jobs.health(any_store, NOW)
    assert healthy and body["jobs"]["digest"]["age_s"] == 300

    any_store.save_run("d2", "digest", "failed", {}, NOW)
    healthy, body = jobs.health(any_store, NOW)
    assert not healthy and body["jobs"]["digest"]["last_status"] == "failed"

    any_store.save_run("d3", "digest", "ok", {}, NOW)
    healthy, body = jobs.health(any_store, NOW + timedelta(hours=4))
    assert not healthy and not body["jobs"]["digest"]["ok"]


def test_broken_alerting_does_not_fail_a_good_run(
    settings: Settings, any_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> list[Any]:
        raise RuntimeError("alert rule bug")

    monkeypatch.setattr(jobs, "evaluate_alerts", broken)

    report = jobs.collect_job(settings, collect=lambda _: {}, store=any_store)

    assert report["status"] == "ok"
    assert any_store.recent_runs()[0]["status"] == "ok"
