"""`digest status`: recent runs as a table, JSON or charts; `digest job`."""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from functions import jobs
from infra import db
from infra.alerts import console_sender
from infra.config import get_settings
from infra.runreport import RunMetrics, metrics
from infra.store import Store, as_utc, open_store, utcnow

_STATUS_STYLE = {"ok": "green", "degraded": "yellow", "failed": "red", "skipped": "dim"}


@click.command()
@click.option("-n", "--limit", default=30, show_default=True, help="Runs to show.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a page with charts of items, stories, cost and failures.",
)
@click.option("--run", "run_id", help="Print one run's whole report as JSON.")
def status(
    limit: int, as_json: bool, html_path: Path | None, run_id: str | None
) -> None:
    """Recent runs: counts, cost, deliveries and failures, newest first."""
    store = open_store(get_settings().store_url)
    try:
        if run_id is not None:
            _print_run(store, run_id)
            return
        runs = [metrics(run) for run in store.recent_runs(limit=limit)]
        healthy, health = jobs.health(store)
    finally:
        store.close()

    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(runs, health), encoding="utf-8")
        click.echo(f"wrote {html_path} ({len(runs)} runs)", err=True)
    if as_json:
        body = {"health": health, "runs": [r.as_json() for r in runs]}
        click.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    if html_path is None:
        _print_table(runs, health, healthy)


def _print_run(store: Store, run_id: str) -> None:
    with store.begin() as conn:
        row = conn.execute(select(db.runs).where(db.runs.c.id == run_id)).first()
    if row is None:
        raise click.ClickException(f"no run {run_id!r}; `digest status` lists them")
    run = dict(row._mapping)
    body = {
        "id": run["id"],
        "kind": run["kind"],
        "status": run["status"],
        "started_at": as_utc(run["started_at"]),
        "finished_at": as_utc(run["finished_at"]),
        "report": run["report"],
    }
    click.echo(json.dumps(body, ensure_ascii=False, indent=2, default=str))


def _print_table(runs: list[RunMetrics], health: dict[str, Any], ok: bool) -> None:
    console = Console()
    if not console.is_terminal:
        console.width = 160
    if not runs:
        console.print("No runs yet. Run `digest run --once` or `digest job collect`.")
        return
    table = Table(title="Recent runs (UTC)", title_justify="left")
    for name in ("started", "job", "status", "time", "new items", "stories"):
        table.add_column(
            name, justify="right" if name.startswith(("new", "sto")) else "left"
        )
    for name in ("LLM $", "digests", "sent", "failed", "bad sources", "fallbacks"):
        table.add_column(name, justify="right")
    for run in runs:
        style = _STATUS_STYLE.get(run.status, "")
        table.add_row(
            run.started_at.strftime("%m-%d %H:%M"),
            run.kind,
            f"[{style}]{run.status}[/]" if style else run.status,
            f"{run.duration_s:.0f}s",
            str(run.items_new),
            str(run.stories),
            f"{run.cost_usd:.3f}",
            str(run.digests),
            str(run.sent),
            str(run.failed),
            str(run.failed_sources),
            str(run.fallbacks),
        )
    console.print(table)
    verdict = "[green]healthy[/]" if ok else "[red]unhealthy[/]"
    console.print(f"Jobs: {verdict}  {_health_line(health)}")
    for run in runs:
        if run.error:
            console.print(
                f"[red]{run.id}[/]: {run.error}", markup=True, highlight=False
            )


def _health_line(health: dict[str, Any]) -> str:
    parts = []
    for job, info in health.get("jobs", {}).items():
        when = _ago(info.get("age_s"))
        parts.append(f"{job}: {info.get('last_status') or 'no run'}, {when}")
    return " | ".join(parts)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min ago"
    if minutes < 48 * 60:
        return f"{minutes / 60:.0f} h ago"
    return f"{minutes / 1440:.0f} days ago"


# HTML ------------------------------------------------------------------------

_WIDTH, _HEIGHT, _PAD = 720, 170, 34
_PAGE_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 760px;
       color: #1f2328; padding: 0 1rem; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.05rem; margin: 1.6rem 0 .3rem; }
svg { background: #f6f8fa; border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; margin-top: 1rem; }
th, td { border-bottom: 1px solid #d0d7de; padding: 3px 6px; text-align: right; }
th:nth-child(-n+3), td:nth-child(-n+3) { text-align: left; }
.failed { color: #cf222e; } .degraded { color: #9a6700; } .ok { color: #1a7f37; }
.muted { color: #57606a; }
"""


def render_html(runs: list[RunMetrics], health: dict[str, Any]) -> str:
    """A self-contained page: inline SVG charts, no scripts, every value escaped."""
    oldest_first = list(reversed(runs))
    collects = [r for r in oldest_first if r.kind == "collect"]
    charts = [
        _bar_chart(
            "New items per collection run", collects, [r.items_new for r in collects]
        ),
        _bar_chart(
            "Stories per collection run", collects, [r.stories for r in collects]
        ),
        _bar_chart(
            "LLM cost per run (USD)",
            oldest_first,
            [r.cost_usd for r in oldest_first],
            money=True,
        ),
        _bar_chart(
            "Failures per run (failed run, failed deliveries, failing sources)",
            oldest_first,
            [_failures(r) for r in oldest_first],
            color="#cf222e",
        ),
    ]
    rows = "\n".join(_table_row(r) for r in runs)
    generated = utcnow().strftime("%Y-%m-%d %H:%M UTC")
    total = sum(r.cost_usd for r in runs)
    state = "healthy" if health.get("ok") else "unhealthy"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>China to Watch: runs</title><style>{_PAGE_STYLE}</style></head>
<body>
<h1>China to Watch: recent runs</h1>
<p class="muted">Generated {generated}. {len(runs)} runs, LLM cost ${total:.3f}.
Jobs are <span class="{"ok" if health.get("ok") else "failed"}">{state}</span>:
{html.escape(_health_line(health))}.</p>
{"".join(charts)}
<h2>Runs, newest first</h2>
<table><thead><tr><th>started (UTC)</th><th>job</th><th>status</th><th>time</th>
<th>new items</th><th>stories</th><th>LLM $</th><th>digests</th><th>sent</th>
<th>failed</th><th>bad sources</th><th>fallbacks</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


def _failures(run: RunMetrics) -> int:
    return int(run.status == "failed") + run.failed + run.failed_sources


def _table_row(run: RunMetrics) -> str:
    cells = [
        run.started_at.strftime("%Y-%m-%d %H:%M"),
        run.kind,
        run.status,
        f"{run.duration_s:.0f}s",
        run.items_new,
        run.stories,
        f"{run.cost_usd:.3f}",
        run.digests,
        run.sent,
        run.failed,
        run.failed_sources,
        run.fallbacks,
    ]
    tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
    title = f' title="{html.escape(run.error)}"' if run.error else ""
    return f'<tr class="{html.escape(run.status)}"{title}>{tds}</tr>'


def _bar_chart(
    title: str,
    runs: list[RunMetrics],
    values: list[float] | list[int],
    *,
    money: bool = False,
    color: str = "#0969da",
) -> str:
    """One bar per run, oldest on the left; hovering a bar shows its run."""
    heading = f"<h2>{html.escape(title)}</h2>\n"
    if not runs:
        return heading + '<p class="muted">No runs of this kind yet.</p>\n'

    top = max(max(values), 1e-9)
    plot_w, plot_h = _WIDTH - 2 * _PAD, _HEIGHT - 2 * _PAD
    step = plot_w / len(values)
    bar_w = max(1.0, step * 0.8)
    fmt = (lambda v: f"${v:.3f}") if money else (lambda v: f"{v:g}")
    bars = []
    for i, (run, value) in enumerate(zip(runs, values, strict=True)):
        h = plot_h * value / top
        x = _PAD + i * step + (step - bar_w) / 2
        y = _PAD + plot_h - h
        label = f"{run.started_at:%Y-%m-%d %H:%M} {run.kind} {run.status}: {fmt(value)}"
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
            f'fill="{color}"><title>{html.escape(label)}</title></rect>'
        )
    first, last = runs[0].started_at, runs[-1].started_at
    axis_y = _PAD + plot_h
    return (
        heading
        + f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'role="img" aria-label="{html.escape(title)}">'
        f'<line x1="{_PAD}" y1="{axis_y}" x2="{_WIDTH - _PAD}" y2="{axis_y}" '
        'stroke="#8c959f"/>'
        f'<text x="{_PAD}" y="{_PAD - 10}" font-size="11" fill="#57606a">'
        f"max {html.escape(fmt(top if max(values) else 0))}</text>"
        + "".join(bars)
        + f'<text x="{_PAD}" y="{axis_y + 16}" font-size="11" fill="#57606a">'
        f"{_when(first)}</text>"
        f'<text x="{_WIDTH - _PAD}" y="{axis_y + 16}" font-size="11" fill="#57606a" '
        f'text-anchor="end">{_when(last)}</text></svg>\n'
    )


def _when(moment: datetime) -> str:
    return html.escape(moment.strftime("%m-%d %H:%M"))


@click.command("job")
@click.argument("name", type=click.Choice(sorted(jobs.SCHEDULES)))
@click.option(
    "--now",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M"]),
    help="Pretend it is this UTC time (digest: whose delivery hour it is).",
)
def job(name: str, now: datetime | None) -> None:
    """Run a scheduled job here, exactly as Modal runs it (lease, report, alerts)."""
    settings = get_settings()
    send = console_sender()
    if name == "collect":
        report = jobs.collect_job(settings, send=send)
    else:
        when = now.replace(tzinfo=utcnow().tzinfo) if now else None
        report = jobs.digest_job(settings, now=when, send=send)
    click.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))


COMMANDS: list[click.Command] = [status, job]
