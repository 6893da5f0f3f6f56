"""The scheduled jobs, as Modal runs them and as `digest job` runs them by hand.

Every job goes through `run_job`, which

1. takes the job's lease in the store (a second scheduler, a manual run or
   an overlapping slow run is skipped, not run twice);
2. checks in to the job's Sentry cron monitor when it has one;
3. runs the work with the run id on every log line and Sentry event;
4. stores the run report, raises alerts from it and the history, and
   sends them (rate-limited) to the admin;
5. re-raises a failure after all that, so Modal retries and Sentry sees it.

The work itself is `functions.run.collect_and_cluster` and
`functions.run.build_and_deliver`; this module only schedules it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from functions import fanout
from infra import lease, telemetry
from infra.alerts import default_sender, dispatch_alerts, evaluate_alerts
from infra.config import Settings
from infra.logs import current_context, redact, run_context
from infra.store import Store, open_store, utcnow

_LOGGER = logging.getLogger(__name__)

MINUTES = 60

Report = dict[str, Any]
Sender = Callable[[str], object]
MapBatches = Callable[[list[list[str]]], Iterable[Report | BaseException]]


class JobFailed(RuntimeError):
    """The work returned a failed report (every batch failed) without raising."""


@dataclass(frozen=True)
class Schedule:
    """When a job runs and how long it may take; Modal and Sentry read the same."""

    job: str
    cron: str
    timezone: str
    timeout_s: int
    interval: timedelta

    @property
    def lease_ttl_s(self) -> int:
        # Past the Modal timeout the container is gone; the lease must be too.
        return self.timeout_s + 5 * MINUTES

    @property
    def monitor_slug(self) -> str:
        return f"china-to-watch-{self.job}"

    def monitor_config(self) -> dict[str, Any]:
        return telemetry.monitor_config(
            self.cron, self.timezone, max_runtime_min=self.timeout_s // MINUTES
        )


# Collection at a quarter past every third hour, clear of the digest's hour mark.
# The digest runs hourly and serves the readers whose local delivery hour it is.
SCHEDULES = {
    "collect": Schedule(
        "collect", "15 */3 * * *", "UTC", 20 * MINUTES, timedelta(hours=3)
    ),
    "digest": Schedule("digest", "0 * * * *", "UTC", 45 * MINUTES, timedelta(hours=1)),
}
BATCH_TIMEOUT_S = 15 * MINUTES


def new_run_id(job: str, now: datetime | None = None) -> str:
    """`collect-20251114T0815-3fa2`: sortable, readable, unique enough."""
    stamp = (now or utcnow()).strftime("%Y%m%dT%H%M")
    return f"{job}-{stamp}-{secrets.token_hex(2)}"


def run_job(
    job: str,
    settings: Settings,
    work: Callable[[Store], Report],
    *,
    store: Store | None = None,
    holder: str | None = None,
    send: Sender | None = None,
) -> Report:
    """Run `work` as scheduled job `job`; returns the stored run report."""
    schedule = SCHEDULES[job]
    telemetry.init_sentry(settings)
    own_store = store is None
    store = store or open_store(settings.store_url)
    run_id = new_run_id(job)
    holder = holder or run_id
    monitored = job in settings.monitored_jobs

    try:
        with (
            run_context(run_id=run_id, job=job),
            telemetry.cron_monitor(
                schedule.monitor_slug, schedule.monitor_config(), enabled=monitored
            ),
        ):
            try:
                return _run_held(
                    job,
                    schedule,
                    run_id,
                    store,
                    holder,
                    work,
                    send or default_sender(settings),
                    timedelta(hours=settings.alert_window_hours),
                )
            except Exception as error:
                # Also failures outside the work: the store down, a failed report.
                telemetry.capture_exception(error)
                raise
    finally:
        telemetry.flush()
        if own_store:
            store.close()


def _run_held(
    job: str,
    schedule: Schedule,
    run_id: str,
    store: Store,
    holder: str,
    work: Callable[[Store], Report],
    send: Sender,
    alert_window: timedelta,
) -> Report:
    started = utcnow()
    if not lease.acquire(store, f"job:{job}", schedule.lease_ttl_s, holder):
        _LOGGER.info("%s skipped: another run holds the lease", job)
        report: Report = {"run_id": run_id, "kind": job, "status": "skipped"}
        store.save_run(run_id, job, "skipped", report, started, utcnow())
        return report

    failure: Exception | None = None
    clock = time.monotonic()
    try:
        report = dict(work(store) or {})
    except Exception as error:
        failure = error
        telemetry.capture_exception(error)
        _LOGGER.exception("%s failed", job)
        report = {"status": "failed", "error": _describe(error)}
    finally:
        lease.release(store, f"job:{job}", holder)

    report.setdefault("run_id", run_id)
    report["kind"] = job
    report.setdefault("status", "degraded" if report.get("fallbacks") else "ok")
    report["duration_s"] = round(time.monotonic() - clock, 3)
    store.save_run(
        str(report["run_id"]), job, str(report["status"]), report, started, utcnow()
    )
    try:
        alerts = evaluate_alerts(store, report)
        dispatch_alerts(store, alerts, send, window=alert_window)
    except Exception:
        # Alerting must not fail a run that worked; the error still reaches Sentry.
        _LOGGER.error("alerts for %s could not be evaluated", job, exc_info=True)
        alerts = []
    _LOGGER.info(
        "%s %s in %.1fs, %d alerts",
        job,
        report["status"],
        report["duration_s"],
        len(alerts),
    )
    if failure is not None:
        raise failure
    if report["status"] == "failed":
        # Raised so the Sentry check-in says error and Modal retries the run.
        raise JobFailed(f"{job} run {report['run_id']} failed: {report.get('error')}")
    return report


def _describe(error: BaseException) -> str:
    return redact(f"{type(error).__name__}: {error}")[:500]


def collect_job(
    settings: Settings,
    *,
    collect: Callable[[Settings], Report] | None = None,
    **options: Any,
) -> Report:
    """The collection and clustering job."""
    work = collect or _pipeline("collect_and_cluster")
    return run_job("collect", settings, lambda _store: work(settings), **options)


def digest_job(
    settings: Settings,
    *,
    now: datetime | None = None,
    deliver: Callable[..., Report] | None = None,
    remote_batch: Any = None,
    **options: Any,
) -> Report:
    """The hourly digest job: readers due now, delivered in batches.

    With `remote_batch` (the Modal Function wrapping `deliver_batch`) the
    batches after the first fan out over containers with `.map`; without it
    they run here, a few at a time.
    """
    build = deliver or _pipeline("build_and_deliver")
    now = now or utcnow()

    def deliver_one(reader_ids: list[str]) -> Report:
        return build(settings, now=now, reader_ids=reader_ids)

    def work(store: Store) -> Report:
        plan = fanout.plan_delivery(
            store,
            now,
            batch_size=settings.delivery_batch_size,
            catchup_hours=settings.delivery_catchup_hours,
        )
        if remote_batch is not None:
            mapper = _remote_mapper(remote_batch, now)
        else:
            mapper = fanout.map_locally(deliver_one, settings.delivery_concurrency)
        reports = fanout.run_batches(plan.batches, deliver_one, mapper)
        merged = fanout.merge_reports(reports) if reports else {"digests": 0}
        merged["readers_due"] = len(plan.due)
        return merged

    return run_job("digest", settings, work, **options)


def _remote_mapper(function: Any, now: datetime) -> MapBatches:
    def map_rest(batches: list[list[str]]) -> Iterable[Report | BaseException]:
        run_id = current_context().get("run_id", "")
        return function.map(
            batches, kwargs={"now": now, "run_id": run_id}, return_exceptions=True
        )

    return map_rest


def deliver_batch(
    settings: Settings, reader_ids: list[str], *, now: datetime, run_id: str = ""
) -> Report:
    """One batch of a digest run, in its own container (a Modal `.map` input)."""
    telemetry.init_sentry(settings)
    with run_context(run_id=run_id, job="digest", stage="deliver-batch"):
        try:
            return _pipeline("build_and_deliver")(
                settings, now=now, reader_ids=reader_ids
            )
        except Exception as error:
            telemetry.capture_exception(error)
            raise
        finally:
            telemetry.flush()


def _pipeline(name: str) -> Callable[..., Report]:
    """An entry point of `functions.run`, imported when a job first needs it."""
    module = importlib.import_module("functions.run")
    return cast(Callable[..., Report], getattr(module, name))


def health(store: Store, now: datetime | None = None) -> tuple[bool, Report]:
    """Is each job running on time and succeeding? For the health endpoint."""
    now = now or utcnow()
    runs = store.recent_runs(limit=100)
    jobs: dict[str, Report] = {}
    healthy = True
    for job, schedule in SCHEDULES.items():
        mine = [r for r in runs if r["kind"] == job and r["status"] != "skipped"]
        # Unhealthy after two missed runs, with the job's timeout as margin.
        allowed = 2 * schedule.interval + timedelta(seconds=schedule.timeout_s)
        last = mine[0] if mine else None
        age = (now - last["started_at"]).total_seconds() if last else None
        on_time = age is not None and age <= allowed.total_seconds()
        ok = on_time and last is not None and last["status"] != "failed"
        healthy = healthy and ok
        jobs[job] = {
            "ok": ok,
            "last_run": last["id"] if last else None,
            "last_status": last["status"] if last else None,
            "age_s": round(age) if age is not None else None,
            "schedule": f"{schedule.cron} ({schedule.timezone})",
        }
    return healthy, {"ok": healthy, "checked_at": now.isoformat(), "jobs": jobs}


def health_app(settings: Settings) -> Starlette:
    """`GET /`: 200 with each job's last run when healthy, 503 when not.

    Mounted on Modal with proxy auth, so only callers holding a Modal proxy
    token (Modal-Key / Modal-Secret headers) reach it; the body holds run
    ids, statuses and ages, nothing personal or secret.
    """

    async def check(request: Request) -> JSONResponse:
        def read() -> tuple[bool, Report]:
            store = open_store(settings.store_url)
            try:
                return health(store)
            finally:
                store.close()

        healthy, body = await asyncio.to_thread(read)
        return JSONResponse(body, status_code=200 if healthy else 503)

    return Starlette(routes=[Route("/", check, methods=["GET"])])
