"""The one job: collect, cluster, edit (summarize, check, rank) and deliver.

`run_job` chains the stages and returns the run report, which is also
stored. Each stage logs one summary line and adds its counts to the
report. A stage that raises marks the run failed and the report says
which; everything written before it stays, so the next run resumes.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from functions.collect import collect
from functions.models import Digest, Item, Source, Story
from functions.sources import SourcesError, load_sources
from infra.config import Settings
from infra.logs import current_context, redact, run_context
from infra.readers import Reader, list_readers
from infra.runreport import failed_stage
from infra.store import Store, open_store, utcnow

_LOGGER = logging.getLogger(__name__)


@dataclass
class RunOptions:
    sources_path: Path
    base_url: str | None = None
    as_of: datetime | None = None
    readers: list[Reader] | None = None
    reader_ids: list[str] | None = None
    preview_path: Path | None = None
    on_source_done: Any = None
    console: IO[str] | None = None
    channel: Any = None
    collect: bool = True
    cluster: bool = True
    edit: bool = True
    deliver: bool = True
    save: bool = True
    run_id: str | None = None


@dataclass
class StageTimer:
    report: dict[str, Any]

    def record(self, stage: str, started: float, **counts: Any) -> None:
        counts["duration_s"] = round(time.monotonic() - started, 3)
        self.report.setdefault("stages", {})[stage] = counts


def new_run_id() -> str:
    return utcnow().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def reference_time(items: list[Item], now: datetime, window: timedelta) -> datetime:
    """`now`, unless every stored item is older than the window (a snapshot replay)."""
    dated = [i.published for i in items if not i.published_estimated]
    if not dated:
        return now
    newest = max(dated)
    return now if now - newest <= window else newest + timedelta(minutes=1)


def _may_replay(settings: Settings, options: RunOptions) -> bool:
    """Replay an old day only to the console: real readers get no back-dated news."""
    return options.channel is None and settings.telegram_bot_token is None


def default_reader(settings: Settings) -> Reader:
    """The console reader of a run with no subscribed readers."""
    return Reader(
        id="console", chat_id="console", lang="en", digest_size=settings.digest_size
    )


async def run_job(
    settings: Settings,
    store: Store,
    options: RunOptions,
    report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the stages `options` asks for and return (and store) the report.

    `report`, when given, is filled in place, so a caller still has it when
    the run raises.
    """
    run_id = options.run_id or current_context().get("run_id") or new_run_id()
    started_at = utcnow()
    report = report if report is not None else {}
    report.update({"run_id": run_id, "kind": "run", "status": "running"})
    if options.save:
        store.save_run(run_id, "run", "running", report, started_at)

    with run_context(run_id=run_id):
        try:
            await _run_stages(settings, store, options, report, StageTimer(report))
            report["status"] = "degraded" if report.get("degraded") else "ok"
        except Exception as exc:
            report["status"] = "failed"
            report["error"] = redact(f"{type(exc).__name__}: {exc}")
            with _failed_stage_context(report):
                _LOGGER.exception("run failed")
            raise
        except BaseException as exc:
            # Cancelled or interrupted: stored as failed, not left "running".
            report["status"] = "failed"
            report["error"] = f"interrupted: {type(exc).__name__}"
            with _failed_stage_context(report):
                _LOGGER.error("run interrupted (%s)", type(exc).__name__)
            raise
        finally:
            finished = utcnow()
            report["started_at"] = started_at.isoformat()
            report["finished_at"] = finished.isoformat()
            report["duration_s"] = round((finished - started_at).total_seconds(), 3)
            if options.save:
                store.save_run(
                    run_id, "run", report["status"], report, started_at, finished
                )
    return report


@contextmanager
def _stage(report: dict[str, Any], name: str) -> Iterator[None]:
    """One stage in its log context; a stage that raises is marked failed."""
    with run_context(stage=name):
        try:
            yield
        except BaseException as exc:
            stages = report.setdefault("stages", {})
            stages[name] = {
                **stages.get(name, {}),
                "status": "failed",
                "error": redact(f"{type(exc).__name__}: {exc}"),
            }
            raise


def _failed_stage_context(report: dict[str, Any]) -> AbstractContextManager[None]:
    """Log a failure under the stage that raised, so its Sentry event says which."""
    where = failed_stage(report)
    return run_context(stage=where) if where else nullcontext()


def _readers(settings: Settings, store: Store, options: RunOptions) -> list[Reader]:
    if options.readers is not None:
        readers = options.readers
        if options.reader_ids is not None:
            readers = [r for r in readers if r.id in set(options.reader_ids)]
        return readers
    if options.reader_ids is not None:
        return list_readers(store, active_only=True, ids=options.reader_ids)
    return list_readers(store, active_only=True) or [default_reader(settings)]


async def _run_stages(
    settings: Settings,
    store: Store,
    options: RunOptions,
    report: dict[str, Any],
    timer: StageTimer,
) -> None:
    from functions.cluster import build_index, cluster_items, recent_stories
    from functions.editorial import EditorialReport

    sources = load_sources(options.sources_path, base_url=options.base_url)
    by_name = {s.name: s for s in sources}
    window = timedelta(hours=settings.cluster_window_hours)
    degraded: list[str] = []

    if options.collect:
        with _stage(report, "collect"):
            t0 = time.monotonic()
            collected = await collect(
                sources, store, settings, on_source_done=options.on_source_done
            )
            summary = collected.as_dict()
            report["sources"] = summary["sources"]
            report["items_new"] = collected.items_new
            timer.record(
                "collect",
                t0,
                sources=len(sources),
                items_seen=collected.items_seen,
                items_new=collected.items_new,
                sources_failed=summary["sources_failed"],
            )

    with _stage(report, "cluster"):
        t0 = time.monotonic()
        now = utcnow()
        latest = store.list_items(limit=1)
        as_of = options.as_of or now
        if options.as_of is None and _may_replay(settings, options):
            as_of = reference_time(latest, now, window)
        report["as_of"] = as_of.isoformat()
        if as_of != now and options.as_of is None:
            report["replay"] = "every stored item is older than the window"
        cluster: dict[str, Any] = {}
        if options.cluster:
            in_window = store.list_items(since=as_of - window)
            index = build_index(settings, store)
            clustered = await cluster_items(
                store, index, in_window, now=as_of, settings=settings
            )
            cluster = clustered.as_dict()
        stories = recent_stories(store, since=as_of - window)
        report["dedup"] = cluster.get("removed", {})
        report["stories"] = len(stories)
        timer.record("cluster", t0, **cluster, stories=len(stories))

    if not options.edit:
        return

    readers = _readers(settings, store, options)
    edition = as_of.strftime("%Y-%m-%d")

    with _stage(report, "edit"):
        t0 = time.monotonic()
        editorial = EditorialReport()
        digests, llm, has_model = await edit_digests(
            settings, store, stories, readers, as_of, edition, by_name, editorial
        )
        report["llm"] = _llm_totals(llm)
        report["budget"] = llm.get("budget", {})
        report["summaries"] = _summary_counts(editorial.summaries)
        fallbacks = _provider_fallbacks(llm)
        if cluster.get("fallback"):
            fallbacks.append({"kind": "vector_index", "detail": cluster["fallback"]})
        if has_model and report["summaries"]["fallback"]:
            fallbacks.append(
                {
                    "kind": "summary",
                    "detail": f"{report['summaries']['fallback']} summaries "
                    "fell back to extractive",
                }
            )
        report["fallbacks"] = fallbacks
        degraded += [f"{f['kind']} fallback: {f['detail']}" for f in fallbacks]
        timer.record("edit", t0, **editorial.as_dict())

    with _stage(report, "deliver"):
        t0 = time.monotonic()
        report["preview"] = str(_write_preview(settings, options, digests))
        delivered = (
            await _deliver(settings, store, options, readers, digests)
            if options.deliver
            else {}
        )
        report["deliveries"] = delivered
        undelivered = delivered.get("failed", 0)
        if undelivered:
            statuses = delivered.get("statuses", {})
            fallbacks.append(
                {
                    "kind": "delivery",
                    "detail": f"{undelivered} of {delivered.get('readers', 0)} "
                    f"readers not delivered ({statuses})",
                }
            )
            report["fallbacks"] = fallbacks
            degraded.append(f"delivery: {undelivered} readers not delivered")
        report["readers_due"] = len(readers)
        report["digests"] = len(digests)
        timer.record("deliver", t0, **delivered)

    report["editions"] = [
        {
            "reader_id": d.reader_id,
            "lang": d.lang,
            "edition": d.edition,
            "stories": [e.story.id for e in d.entries],
            "headlines": [e.summary.headline for e in d.entries],
        }
        for d in digests
    ]
    if degraded:
        report["degraded"] = degraded


async def edit_digests(
    settings: Settings,
    store: Store,
    stories: list[Story],
    readers: list[Reader],
    as_of: datetime,
    edition: str,
    sources: dict[str, Source],
    editorial: Any = None,
) -> tuple[list[Digest], dict[str, Any], bool]:
    """Summaries, checks and one ranked digest per reader; returns the LLM report.

    Summaries are cached by story, language and member set, so editing
    again for one reader (`/digest`) reuses what the run already paid for.
    """
    from functions.editorial import build_digests
    from infra.llm import build_chain

    member_ids = sorted({i for s in stories for i in s.member_ids})
    items_by_id = {i.id: i for i in store.get_items(member_ids)}
    stories = [s for s in stories if all(i in items_by_id for i in s.member_ids)]
    chain = build_chain(settings, store)
    try:
        digests = await build_digests(
            store,
            chain if chain.providers else None,
            stories,
            items_by_id,
            readers,
            now=as_of,
            edition=edition,
            settings=settings,
            sources=sources,
            report=editorial,
        )
        llm = chain.report()
        chain.log_summary()
    finally:
        await chain.aclose()
    return digests, llm, bool(chain.providers)


async def edit_for_readers(
    settings: Settings,
    store: Store,
    readers: list[Reader],
    *,
    now: datetime | None = None,
    edition: str | None = None,
) -> list[Digest]:
    """These readers' digests from stored stories: `/digest` and `digest send`.

    Always as of the real now: these go to real readers, never a replay.
    """
    from functions.cluster import recent_stories

    as_of = now or utcnow()
    window = timedelta(hours=settings.cluster_window_hours)
    try:
        sources = {s.name: s for s in load_sources(settings.digest_sources)}
    except SourcesError as exc:
        _LOGGER.warning("sources unavailable, links carry no labels: %s", exc)
        sources = {}
    stories = recent_stories(store, since=as_of - window)
    asked = [replace(reader, active=True) for reader in readers]
    digests, _, _ = await edit_digests(
        settings,
        store,
        stories,
        asked,
        as_of,
        edition or as_of.strftime("%Y-%m-%d"),
        sources,
    )
    return digests


async def digest_for_reader(
    settings: Settings, store: Store, reader: Reader, *, now: datetime | None = None
) -> Digest:
    """One reader's digest now: what `/digest` sends."""
    [digest] = await edit_for_readers(settings, store, [reader], now=now)
    return digest


def _write_preview(
    settings: Settings, options: RunOptions, digests: list[Digest]
) -> Path:
    from bot.render import write_preview

    path = options.preview_path or settings.digest_out / "preview.html"
    return write_preview(digests, path)


async def _deliver(
    settings: Settings,
    store: Store,
    options: RunOptions,
    readers: list[Reader],
    digests: list[Digest],
) -> dict[str, Any]:
    from bot.channels import broadcast, deliver_digests

    by_id = {r.id: r for r in readers}
    jobs = [(by_id[d.reader_id], d) for d in digests if d.reader_id in by_id]
    if options.channel is not None:
        result = await broadcast(options.channel, jobs)
        name = options.channel.name
    else:
        result = await deliver_digests(settings, store, jobs, stream=options.console)
        name = "telegram" if settings.telegram_bot_token is not None else "console"
    statuses = result.statuses
    return {
        "channel": name,
        "readers": len(jobs),
        "sent": statuses.get("sent", 0),
        "skipped": sum(r.skipped > 0 and r.sent == 0 for r in result.results),
        # A reader who blocked the bot is gone, not a failure of the run.
        "failed": sum(n for k, n in statuses.items() if k not in ("sent", "blocked")),
        "blocked": statuses.get("blocked", 0),
        "messages_sent": result.messages_sent,
        "plain_fallbacks": result.plain_fallbacks,
        "statuses": statuses,
    }


def _llm_totals(llm: dict[str, Any]) -> dict[str, Any]:
    providers = llm.get("providers", {})
    total = {
        key: sum(p.get(key, 0) for p in providers.values())
        for key in ("calls", "prompt_tokens", "completion_tokens", "cache_hit_tokens")
    }
    return {
        "calls": total["calls"],
        "tokens_in": total["prompt_tokens"],
        "tokens_out": total["completion_tokens"],
        "cache_hit_tokens": total["cache_hit_tokens"],
        "cost_usd": round(sum(p.get("cost_usd", 0.0) for p in providers.values()), 6),
        **llm,
    }


def _summary_counts(stats: Any) -> dict[str, int]:
    """The editorial stage's counters folded into llm / extractive / fallback."""
    llm = sum(n for k, n in stats.items() if k in ("written", "regenerated", "cached"))
    fallback = sum(n for k, n in stats.items() if k.startswith("fallback"))
    return {
        "llm": llm,
        "extractive": stats.get("extractive", 0),
        "fallback": fallback,
        **stats,
    }


def _provider_fallbacks(llm: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for stage, info in llm.get("stages", {}).items():
        if info.get("fallbacks"):
            served = ", ".join(f"{p} {n}" for p, n in info.get("served", {}).items())
            found.append(
                {
                    "kind": "provider",
                    "detail": f"{stage}: {info['fallbacks']} calls moved to the "
                    f"next provider (served by {served or 'none'})",
                }
            )
    return found


LEASES = ("job:collect", "job:digest")
LEASE_TTL_S = 60 * 60


def run_once(
    settings: Settings,
    store: Store,
    options: RunOptions,
    *,
    send: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """The whole job by hand (`digest run`, `digest demo`): leased, then alerted.

    It holds both scheduled jobs' leases, so it never overlaps a scheduled
    collection or digest on the same store.
    """
    from infra import lease
    from infra.alerts import console_sender, dispatch_alerts, evaluate_alerts

    holder = "run-" + uuid.uuid4().hex[:8]
    taken: list[str] = []
    for name in LEASES:
        if not lease.acquire(store, name, LEASE_TTL_S, holder):
            for held in taken:
                lease.release(store, held, holder)
            current = lease.holder_of(store, name)
            return {"status": "skipped", "error": f"{name} is held by {current}"}
        taken.append(name)
    report: dict[str, Any] = {}
    try:
        asyncio.run(run_job(settings, store, options, report))
    finally:
        for name in taken:
            lease.release(store, name, holder)
        # A failed run alerts too; alerting itself never hides the run's error.
        try:
            alerts = evaluate_alerts(store, report)
            dispatch_alerts(store, alerts, send or console_sender(sys.stderr))
        except Exception:
            _LOGGER.error("alerts could not be evaluated", exc_info=True)
    return report


def collect_and_cluster(settings: Settings) -> dict[str, Any]:
    """The scheduled collection job's work: collect every source, then cluster."""
    store = open_store(settings.store_url)
    try:
        options = RunOptions(
            sources_path=settings.digest_sources, edit=False, deliver=False, save=False
        )
        report = asyncio.run(run_job(settings, store, options))
    finally:
        store.close()
    report["kind"] = "collect"
    return report


def build_and_deliver(
    settings: Settings,
    *,
    now: datetime | None = None,
    reader_ids: list[str] | None = None,
) -> dict[str, Any]:
    """The scheduled digest job's work for one batch of readers due now."""
    store = open_store(settings.store_url)
    try:
        options = RunOptions(
            sources_path=settings.digest_sources,
            as_of=now,
            reader_ids=reader_ids,
            collect=False,
            cluster=False,
            save=False,
        )
        report = asyncio.run(run_job(settings, store, options))
    finally:
        store.close()
    report["kind"] = "digest"
    return report
