"""`digest fetch`, `digest items`, `digest run` and `digest demo`."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from functions.collect import CollectReport, collect
from functions.run import RunOptions, run_once
from functions.sources import SourcesError, load_sources
from infra.config import Settings, get_settings
from infra.store import Store, open_store

_ERR = Console(stderr=True)
_OUT = Console(soft_wrap=True)


def _sources_option(func: Any) -> Any:
    return click.option(
        "--sources",
        "sources_path",
        type=click.Path(path_type=Path),
        default=None,
        help="A sources TOML file or a directory of feed files "
        "(default: DIGEST_SOURCES or ./sources.toml).",
    )(func)


def _load(
    settings: Settings, path: Path | None, base_url: str | None = None
) -> list[Any]:
    try:
        return load_sources(path or settings.digest_sources, base_url=base_url)
    except SourcesError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield lambda outcome: None
        return
    with Progress(
        TextColumn("fetching"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=_ERR,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=total)

        def advance(outcome: Any) -> None:
            progress.update(task, advance=1, description=outcome.source.name)

        yield advance


def _sources_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="sources", title_justify="left")
    for column in ("source", "status", "fetched", "new", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        style = {"ok": "green", "not_modified": "cyan", "stale": "yellow"}.get(
            row["status"], "red"
        )
        table.add_row(
            row["name"],
            f"[{style}]{row['status']}[/]",
            str(row["fetched"]),
            str(row["new"]),
            row["error"] or "",
        )
    return table


@click.command("fetch")
@_sources_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def fetch_cmd(sources_path: Path | None, as_json: bool) -> None:
    """Fetch every source once and store new items; show a table per source."""
    settings = get_settings()
    sources = _load(settings, sources_path)
    store = open_store()
    with _progress(len(sources), enabled=not as_json and _ERR.is_terminal) as advance:
        report: CollectReport = asyncio.run(
            collect(sources, store, settings, on_source_done=advance)
        )
    data = report.as_dict()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    _OUT.print(_sources_table(data["sources"]))
    _OUT.print(
        f"{data['items_new']} new items from {len(sources)} sources "
        f"({data['sources_failed']} failed) in {data['duration_s']:.1f}s"
    )


def _parse_when(value: str | None) -> datetime | None:
    """ISO 8601 date or time, or a relative age such as 6h, 2d or 30m."""
    if not value:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    if value[:-1].isdigit() and value[-1] in units:
        return datetime.now(UTC) - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r}: use an ISO date (2025-11-14) or an age (6h, 2d)"
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@click.command("items")
@click.option("--source", default=None, help="Only this source's items.")
@click.option("--since", default=None, help="ISO date/time or an age: 6h, 2d.")
@click.option("--limit", type=int, default=None, help="At most this many items.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def items_cmd(
    source: str | None, since: str | None, limit: int | None, as_json: bool
) -> None:
    """List stored items, newest first: exactly what the pipeline saw."""
    store = open_store()
    items = store.list_items(source=source, since=_parse_when(since), limit=limit)
    for item in items:
        if as_json:
            row = {
                "id": item.id,
                "source": item.source,
                "url": item.url,
                "title": item.title,
                "text": item.text,
                "lang": item.lang,
                "published": item.published.isoformat(),
                "published_estimated": item.published_estimated,
            }
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(
                f"{item.published:%Y-%m-%d %H:%M}  {item.source:<20.20} {item.title}"
            )
    if not as_json:
        click.echo(f"{len(items)} items", err=True)


def _run(
    settings: Settings,
    store: Store,
    options: RunOptions,
    as_json: bool,
) -> dict[str, Any]:
    options.console = sys.stderr if as_json else sys.stdout
    try:
        report = run_once(settings, store, options)
    except SourcesError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, default=str))
    elif report.get("status") == "skipped":
        raise click.ClickException(
            f"another run is in progress ({report.get('error')}); a run that was "
            "killed holds it until its lease expires (at most an hour)"
        )
    else:
        _OUT.print(_sources_table(report.get("sources", [])))
        _OUT.print(run_summary(report))
    return report


def run_summary(report: dict[str, Any]) -> str:
    """The few lines a person reads after a run."""
    stages = report.get("stages", {})
    cluster = stages.get("cluster", {})
    edit = stages.get("edit", {})
    deliver = stages.get("deliver", {})
    removed = cluster.get("removed", {})
    lines = [
        f"run {report.get('run_id', '-')} ({report.get('status')}): "
        f"{report.get('items_new', 0)} new items; "
        f"{cluster.get('items_in', 0)} in the window, duplicates removed "
        + ", ".join(f"{k} {v}" for k, v in removed.items())
        + f"; {cluster.get('stories', 0)} stories",
        f"summaries {edit.get('summaries', {})}, verdicts {edit.get('verdicts', {})}",
        f"delivered on {deliver.get('channel', '-')}: "
        f"{deliver.get('messages_sent', 0)} messages sent now to "
        f"{deliver.get('readers', 0)} readers; {deliver.get('skipped', 0)} already "
        f"had this edition, {deliver.get('failed', 0)} not delivered",
        f"preview: {report.get('preview')}",
    ]
    if report.get("replay"):
        lines.append(f"as of {report['as_of']}: {report['replay']}")
    for reason in report.get("degraded", []):
        lines.append(f"degraded: {reason}")
    return "\n".join(lines)


@click.command("run")
@click.option("--once", is_flag=True, help="Run the job once and exit (the default).")
@_sources_option
@click.option("--as-of", default=None, help="Treat this ISO time as now (replays).")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
def run_cmd(
    once: bool, sources_path: Path | None, as_of: str | None, as_json: bool
) -> None:
    """Collect, cluster, summarize, rank and deliver once."""
    settings = get_settings()
    path = sources_path or settings.digest_sources
    _load(settings, path)
    options = RunOptions(sources_path=path, as_of=_parse_when(as_of))
    _run(settings, open_store(), options, as_json)


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
@click.option("--keep", is_flag=True, help="Keep the demo state from the last run.")
def demo_cmd(as_json: bool, keep: bool) -> None:
    """The whole job offline: sample feeds served on 127.0.0.1, no keys needed."""
    from functions.demo import SAMPLES, sample_readers, serve_samples
    from infra.readers import save_reader

    settings = get_settings()
    out = settings.digest_out / "demo"
    if out.exists() and not keep:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{out / 'demo.db'}")
    for reader in sample_readers():
        save_reader(store, reader)

    with serve_samples() as base_url:
        if not as_json:
            click.echo(f"serving the sample feeds on {base_url}", err=True)
        options = RunOptions(
            sources_path=SAMPLES / "sources.toml",
            base_url=base_url,
            preview_path=out / "preview.html",
        )
        report = _run(settings, store, options, as_json)
    if not as_json:
        click.echo(
            "\nNext: open the preview above in a browser; run `digest run --once` for "
            "the real sources in sources.toml; `digest --help` lists everything.",
            err=True,
        )
    if report.get("status") != "ok":
        sys.exit(1)


COMMANDS: list[click.Command] = [fetch_cmd, items_cmd, run_cmd, demo_cmd]
