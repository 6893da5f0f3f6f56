"""The one job: collect, cluster, summarize, rank, compose and deliver.

`run_job` chains the stages and returns the run report, which is also
stored. Each stage logs one summary line and adds its counts to the
report; a stage that fails marks the run failed and the report says
where.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from functions.collect import collect
from functions.extractive import extractive_summary
from functions.models import Digest, DigestEntry, Item, Source, SourceLink, Story
from functions.sources import load_sources
from infra.config import Settings
from infra.logs import run_context
from infra.readers import Reader
from infra.store import Store, utcnow

_LOGGER = logging.getLogger(__name__)


@dataclass
class RunOptions:
    sources_path: Path
    base_url: str | None = None
    as_of: datetime | None = None
    readers: list[Reader] | None = None
    preview_path: Path | None = None
    on_source_done: Callable[[Any], None] | None = None
    print_digest: Callable[[str], None] | None = None


@dataclass
class StageTimer:
    report: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

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


def group_exact(items: list[Item]) -> list[Story]:
    """Stories from exact duplicates only: items sharing a normalized title."""
    groups: dict[str, list[Item]] = {}
    for item in sorted(items, key=lambda i: (i.published, i.id)):
        groups.setdefault(item.title_hash, []).append(item)
    stories = []
    for members in groups.values():
        first = members[0]
        stories.append(
            Story(
                id="s" + first.id[1:],
                title=first.title,
                member_ids=[m.id for m in members],
                first_seen=min(m.published for m in members),
                last_seen=max(m.published for m in members),
                langs=sorted({m.lang for m in members}),
                sources=sorted({m.source for m in members}),
            )
        )
    return stories


def links_for(
    story: Story, items: dict[str, Item], sources: dict[str, Source]
) -> list[SourceLink]:
    links = []
    seen: set[str] = set()
    for item_id in story.member_ids:
        item = items[item_id]
        if item.source in seen:
            continue
        seen.add(item.source)
        source = sources.get(item.source)
        links.append(
            SourceLink(
                name=source.display_name if source else item.source,
                url=item.url,
                ownership=source.ownership if source else "unknown",
            )
        )
    return links


def default_reader(settings: Settings) -> Reader:
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
    timer = StageTimer(report)
    store.save_run(run_id, "run", "running", report, started_at)

    with run_context(run_id=run_id):
        try:
            await _run_stages(settings, store, options, report, timer)
            report["status"] = "ok"
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


async def _run_stages(
    settings: Settings,
    store: Store,
    options: RunOptions,
    report: dict[str, Any],
    timer: StageTimer,
) -> None:
    sources = load_sources(options.sources_path, base_url=options.base_url)
    by_name = {s.name: s for s in sources}
    window = timedelta(hours=settings.cluster_window_hours)

    with run_context(stage="collect"):
        t0 = time.monotonic()
        collected = await collect(
            sources, store, settings, on_source_done=options.on_source_done
        )
        report["sources"] = [s.as_dict() for s in collected.sources]
        report["items_new"] = collected.items_new
        timer.record(
            "collect",
            t0,
            sources=len(sources),
            items_seen=collected.items_seen,
            items_new=collected.items_new,
            sources_failed=collected.as_dict()["sources_failed"],
        )

    with run_context(stage="cluster"):
        t0 = time.monotonic()
        stored = store.list_items()
        as_of = options.as_of or reference_time(stored, utcnow(), window)
        recent = [i for i in stored if as_of - window <= i.published <= as_of + window]
        stories = group_exact(recent)
        report["as_of"] = as_of.isoformat()
        timer.record(
            "cluster",
            t0,
            items_in=len(recent),
            removed={"exact": len(recent) - len(stories)},
            stories=len(stories),
        )
        _LOGGER.info("clustered %d items into %d stories", len(recent), len(stories))

    items_by_id = {i.id: i for i in recent}
    readers = options.readers or [default_reader(settings)]
    digests: list[Digest] = []
    with run_context(stage="compose"):
        t0 = time.monotonic()
        ranked = sorted(
            stories,
            key=lambda s: (s.coverage, s.last_seen, s.id),
            reverse=True,
        )
        for reader in readers:
            entries = []
            for story in ranked[: reader.digest_size]:
                members = [items_by_id[i] for i in story.member_ids]
                summary = extractive_summary(story, members, reader.lang)
                entries.append(
                    DigestEntry(story, summary, links_for(story, items_by_id, by_name))
                )
            digests.append(
                Digest(
                    reader_id=reader.id,
                    edition=as_of.strftime("%Y-%m-%d"),
                    lang=reader.lang,
                    generated_at=utcnow(),
                    entries=entries,
                )
            )
        timer.record("compose", t0, digests=len(digests))

    with run_context(stage="deliver"):
        t0 = time.monotonic()
        from bot.render import render_text, write_preview

        preview = options.preview_path or settings.digest_out / "preview.html"
        write_preview(digests, preview)
        if options.print_digest:
            for digest in digests:
                options.print_digest(render_text(digest))
        report["preview"] = str(preview)
        timer.record("deliver", t0, channel="console", digests=len(digests))
