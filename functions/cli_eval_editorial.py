"""`digest eval factcheck` and `digest eval rank`: the editorial evaluations.

Both run on the project's own samples (`functions/samples/`). The model
pass of the fact-check evaluation runs only when a model is configured.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from functions.chat import ChatChain, has_model
from functions.editorial_eval import (
    FEEDBACK_FILE,
    KINDS,
    STORIES_FILE,
    evaluate_factcheck,
    load_feedback_log,
    load_samples,
    replay_rank,
)
from infra.config import get_settings


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:5.1f}%"


async def _factcheck(path: Path, use_model: bool) -> dict[str, Any]:
    samples, _ = load_samples(path)
    chain, why_not = _configured_chain() if use_model else (None, "--no-model")
    try:
        scores = await evaluate_factcheck(samples, chain)
    finally:
        close = getattr(chain, "aclose", None)
        if close is not None:
            await close()
    result = scores.as_dict()
    result["model_pass"] = "ran" if scores.with_model is not None else why_not
    return result


def _configured_chain() -> tuple[ChatChain | None, str]:
    """The LLM layer's chain when one is installed and has a provider."""
    import infra.llm
    from infra.store import open_store

    build = getattr(infra.llm, "build_chain", None)
    if build is None:
        return None, "the LLM layer is not installed"
    chain: ChatChain = build(get_settings(), open_store())
    if not has_model(chain):
        return None, "no model provider is configured"
    return chain, ""


@click.command("factcheck")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--model/--no-model",
    default=True,
    help="Also run the model pass when a provider is configured (default on).",
)
@click.option(
    "--stories",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=STORIES_FILE,
    show_default=True,
    help="Sample stories with reference summaries.",
)
def factcheck_cmd(as_json: bool, model: bool, stories: Path) -> None:
    """Plant errors in reference summaries and measure what the fact-check catches."""
    result = asyncio.run(_factcheck(stories, model))
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return

    det, mod = result["deterministic"], result["with_model"]
    click.echo(
        f"fact-check on {result['stories']} sample stories: "
        f"{result['clean_sentences']} faithful sentences, "
        f"{result['planted_errors']} planted errors"
    )
    click.echo(f"{'error':<12}{'planted':>8}{'deterministic':>15}{'+ model':>10}")
    for kind in KINDS:
        with_model = mod["by_kind"][kind] if mod["by_kind"] else None
        click.echo(
            f"{kind:<12}{result['planted_by_kind'][kind]:>8}"
            f"{_percent(det['by_kind'][kind]):>15}{_percent(with_model):>10}"
        )
    click.echo(
        f"{'detected':<12}{result['planted_errors']:>8}"
        f"{_percent(det['detection_rate']):>15}{_percent(mod['detection_rate']):>10}"
    )
    click.echo(
        f"{'false alarm':<12}{result['clean_sentences']:>8}"
        f"{_percent(det['false_alarm_rate']):>15}"
        f"{_percent(mod['false_alarm_rate']):>10}"
    )
    if result["model_pass"] != "ran":
        click.echo(f"model pass not run: {result['model_pass']}")
    else:
        click.echo(f"model pass by {result['model']}")


@click.command("rank")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-k", "k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--log",
    "log_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=FEEDBACK_FILE,
    show_default=True,
    help="Feedback log to replay (readers and taps by day, JSON lines).",
)
@click.option(
    "--stories",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=STORIES_FILE,
    show_default=True,
)
def rank_cmd(as_json: bool, k: int, log_path: Path, stories: Path) -> None:
    """Replay a feedback log day by day: nDCG of the ranking against recency."""
    samples, sources = load_samples(stories)
    result = replay_rank(
        samples, sources, load_feedback_log(log_path), k=k, settings=get_settings()
    )
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return

    click.echo(
        f"rank replay: {result['readers']} readers, {result['days']} days, "
        f"{result['taps']} taps; nDCG@{k} per reader and day"
    )
    click.echo(f"{'day':>4}  {'reader':<12}{'ranked':>8}{'no taps':>9}{'recency':>9}")
    for row in result["rows"]:
        click.echo(
            f"{row['day']:>4}  {row['reader']:<12}{row['ranked']:>8.3f}"
            f"{row['without_feedback']:>9.3f}{row['recency']:>9.3f}"
        )
    click.echo(
        f"{'mean':>4}  {'':<12}{result['ndcg']:>8.3f}"
        f"{result['without_feedback_ndcg']:>9.3f}{result['recency_ndcg']:>9.3f}"
    )
    click.echo("no taps: the same ranking with the feedback log left out")
