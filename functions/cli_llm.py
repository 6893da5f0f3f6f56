"""`digest cost`: what the model calls cost this month, and where it is heading."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from infra.config import get_settings
from infra.llm.ledger import PROJECTION_DAYS, Ledger
from infra.store import open_store


@click.command("cost")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def cost(as_json: bool) -> None:
    """Month to date per provider, model and stage, and a month-end projection.

    The projection adds the daily rate of the last few days of calls to
    the month to date, for the days left in the month.
    """
    settings = get_settings()
    store = open_store()
    try:
        report = Ledger(store).cost_report(
            datetime.now(UTC),
            budget_usd=settings.budget_usd,
            soft_fraction=settings.budget_soft_fraction,
            hard_fraction=settings.budget_hard_fraction,
        )
    finally:
        store.close()

    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    click.echo(format_report(report))


def format_report(report: dict[str, Any]) -> str:
    """The cost report as aligned text."""
    lines = [
        f"LLM spend for {report['month']} (UTC)",
        f"  month to date   ${report['month_to_date_usd']:.4f}",
        f"  projected       ${report['projected_month_usd']:.4f}"
        f"  (last {PROJECTION_DAYS} days' daily rate)",
        f"  budget          ${report['budget_usd']:.2f}"
        f"  (soft line ${report['soft_line_usd']:.2f},"
        f" hard line ${report['hard_line_usd']:.2f}, now {report['state']})",
    ]
    if report["prefix_cache_hit_rate"] is not None:
        lines.append(
            f"  prefix cache    {report['prefix_cache_hit_rate']:.0%} of prompt tokens"
        )
    if not report["calls"]:
        lines.append("\nNo model calls this month.")
        return "\n".join(lines)

    lines += [
        "",
        f"{'provider':<10} {'model':<22} {'calls':>6} {'refused':>8} "
        f"{'failed':>7} {'usd':>10}",
    ]
    for provider, entry in sorted(report["calls"].items()):
        for model, m in sorted(entry["models"].items()):
            lines.append(
                f"{provider:<10} {model:<22} {m['calls']:>6} {'':>8} {'':>7} "
                f"{m['usd']:>10.4f}"
            )
        lines.append(
            f"{'':<10} {'(all)':<22} {entry['calls']:>6} {entry['refused']:>8} "
            f"{entry['failed']:>7} {entry['usd']:>10.4f}"
        )
    lines += ["", f"{'stage':<33} {'calls':>6} {'usd':>10}"]
    for stage, s in sorted(report["stages"].items()):
        lines.append(f"{stage:<33} {s['calls']:>6} {s['usd']:>10.4f}")
    if report["recent_runs"]:
        lines += ["", f"{'recent run':<33} {'calls':>6} {'usd':>10}"]
        for run in report["recent_runs"]:
            label = f"{run['started'][:16]} {run['run_id']}"[:33]
            lines.append(f"{label:<33} {run['calls']:>6} {run['usd']:>10.4f}")
    return "\n".join(lines)


COMMANDS: list[click.Command] = [cost]
