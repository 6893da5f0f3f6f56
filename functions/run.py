"""The one job: collect, cluster, edit (summarize, check, rank) and deliver.

`run_job` chains the stages and returns the run report, which is also
stored. Each stage logs one summary line and adds its counts to the
report. A stage that raises marks the run failed and the report says
which; everything written before it stays, so the next run resumes.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from functions.collect import collect
from functions.models import Digest, Item
from functions.sources import load_sources
from infra.config import Settings
from infra.logs import run_context
from infra.readers import Reader, list_readers
from infra.store import Store, utcnow

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
    deliver: bool = True


@dataclass
class StageTimer:
    report: dict[str, Any]
    started: dict[str, float] = field(default_factory=dict)

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


def default_reader(settings: Settings) -> Reader:
    """The console reader of a run with no subscribed readers."""
    return Reader(
        id="console", chat_id="console", lang="en", digest_size=settings.digest_size
    )


async def run_job(
    settings: Settings, store: Store, options: RunOptions
) -> dict[str, Any]:
    """Run the whole job once and return (and store) its report."""
    run_id = new_run_id()
    started_at = utcnow()
    report: dict[str, Any] = {"run_id": run_id, "kind": "run", "status": "running"}
    store.save_run(run_id, "run", "running", report, started_at)

    with run_context(run_id=run_id):
        try:
            await _run_stages(settings, store, options, report, StageTimer(report))
            report["status"] = "degraded" if report.get("degraded") else "ok"
        except Exception as exc:
            report["status"] = "failed"
            report["error"] = f"{type(exc).__name__}: {exc}"
            _LOGGER.exception("run failed")
            raise
        finally:
            finished = utcnow()
            report["started_at"] = started_at.isoformat()
            report["finished_at"] = finished.isoformat()
            report["duration_s"] = round((finished - started_at).total_seconds(), 3)
            store.save_run(
                run_id, "run", report["status"], report, started_at, finished
            )
    return report


def _readers(settings: Settings, store: Store, options: RunOptions) -> list[Reader]:
    readers = options.readers
    if readers is None:
        readers = list_readers(store, active_only=True)
    if options.reader_ids is not None:
        wanted = set(options.reader_ids)
        readers = [r for r in readers if r.id in wanted]
    elif not readers:
        readers = [default_reader(settings)]
    return readers


async def _run_stages(
    settings: Settings,
    store: Store,
    options: RunOptions,
    report: dict[str, Any],
    timer: StageTimer,
) -> None:
    from functions.cluster import build_index, cluster_items, recent_stories
    from functions.editorial import EditorialReport, build_digests
    from infra.llm import build_chain

    sources = load_sources(options.sources_path, base_url=options.base_url)
    by_name = {s.name: s for s in sources}
    window = timedelta(hours=settings.cluster_window_hours)
    degraded: list[str] = []

    if options.collect:
        with run_context(stage="collect"):
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

    with run_context(stage="cluster"):
        t0 = time.monotonic()
        now = utcnow()
        latest = store.list_items(limit=1)
        as_of = options.as_of or reference_time(latest, now, window)
        report["as_of"] = as_of.isoformat()
        if as_of != now and options.as_of is None:
            report["replay"] = "every stored item is older than the window"
        in_window = store.list_items(since=as_of - window)
        index = build_index(settings, store)
        clustered = await cluster_items(
            store, index, in_window, now=as_of, settings=settings
        )
        stories = recent_stories(store, since=as_of - window)
        cluster = clustered.as_dict()
        if cluster.get("fallback"):
            degraded.append(f"vector index fell back: {cluster['fallback']}")
        timer.record("cluster", t0, **cluster, stories=len(stories))

    member_ids = sorted({i for s in stories for i in s.member_ids})
    items_by_id = {i.id: i for i in store.get_items(member_ids)}
    stories = [s for s in stories if all(i in items_by_id for i in s.member_ids)]
    readers = _readers(settings, store, options)
    edition = as_of.strftime("%Y-%m-%d")

    with run_context(stage="edit"):
        t0 = time.monotonic()
        chain = build_chain(settings, store)
        editorial = EditorialReport()
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
                sources=by_name,
                report=editorial,
            )
            llm = chain.report()
            chain.log_summary()
        finally:
            await chain.aclose()
        report["llm"] = llm
        if editorial.summaries.get("extractive-fallback") and chain.providers:
            degraded.append("some summaries fell back to extractive")
        timer.record("edit", t0, **editorial.as_dict())

    with run_context(stage="deliver"):
        t0 = time.monotonic()
        report["preview"] = str(_write_preview(settings, options, digests))
        delivered = (
            await _deliver(settings, store, options, readers, digests)
            if options.deliver
            else {}
        )
        report["deliveries"] = delivered
        timer.record("deliver", t0, **delivered)

    report["digests"] = [
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
    from bot.channels import ConsoleChannel, TelegramChannel, broadcast

    channel = options.channel
    if channel is None and settings.telegram_bot_token is not None:
        from bot.client import make_bot

        channel = TelegramChannel(make_bot(settings), store)
    if channel is None:
        channel = ConsoleChannel(store, stream=options.console)

    by_id = {r.id: r for r in readers}
    jobs = [(by_id[d.reader_id], d) for d in digests if d.reader_id in by_id]
    result = await broadcast(channel, jobs)
    return {
        "channel": channel.name,
        "readers": len(jobs),
        "messages_sent": result.messages_sent,
        "plain_fallbacks": result.plain_fallbacks,
        "statuses": result.statuses,
    }
