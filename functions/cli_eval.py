"""`digest eval ...`: score pipeline stages on labeled files.

Other stages add their own commands to `eval_group` (`eval factcheck`,
`eval rank`); this module holds `eval dedup`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from functions.cluster import ClusterConfig
from functions.dedup_eval import LabeledFileError, evaluate, load_labeled, render
from infra.config import Settings, get_settings
from infra.embedders import select_embedder
from infra.store import Store
from infra.vector import (
    IndexUnavailable,
    LocalVectorIndex,
    UpstashVectorIndex,
    VectorIndex,
)

DEDUP_LABELED = Path(__file__).resolve().parent / "samples" / "dedup_labeled.jsonl"
EVAL_NAMESPACE = "digest-eval"
# Every configuration clusters the file again: their per-run lines are noise here.
_CHATTY = ("functions.cluster", "infra.store", "infra.vector")


@contextmanager
def _quiet() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _CHATTY]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@click.group("eval")
def eval_group() -> None:
    """Score pipeline stages on labeled files."""


@eval_group.command("dedup")
@click.argument(
    "file",
    required=False,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--index",
    "index_name",
    type=click.Choice(["local", "upstash"]),
    default="local",
    show_default=True,
    help="Embed with the local embedder or the Upstash index's own model.",
)
@click.option("--no-sweep", is_flag=True, help="Skip the threshold sweep.")
def dedup(file: Path | None, as_json: bool, index_name: str, no_sweep: bool) -> None:
    """Score clustering on FILE (default: the shipped labeled set)."""
    path = file or DEDUP_LABELED
    if not path.exists():
        raise click.ClickException(f"no labeled file at {path}")
    try:
        records = load_labeled(path)
    except LabeledFileError as exc:
        raise click.ClickException(str(exc)) from exc

    settings = get_settings()
    config = ClusterConfig.from_settings(settings)
    with _quiet():
        store = Store("sqlite://")
        try:
            index = _index(index_name, settings, store)
            result = asyncio.run(
                evaluate(records, index, config, file=str(path), sweep=not no_sweep)
            )
        except IndexUnavailable as exc:
            raise click.ClickException(f"vector index unavailable: {exc}") from exc
        finally:
            store.close()

    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False))
    else:
        click.echo(render(result))


def _index(name: str, settings: Settings, store: Store) -> VectorIndex:
    if name == "local":
        return LocalVectorIndex(store, select_embedder(settings))
    url, token = settings.upstash_vector_rest_url, settings.upstash_vector_rest_token
    if not url or token is None:
        raise click.ClickException(
            "set UPSTASH_VECTOR_REST_URL and UPSTASH_VECTOR_REST_TOKEN to "
            "evaluate with Upstash"
        )
    # Its own namespace, so evaluation never touches the production vectors.
    return UpstashVectorIndex(
        url,
        token.get_secret_value(),
        timeout_s=max(settings.upstash_vector_timeout_s, 30.0),
        namespace=EVAL_NAMESPACE,
    )


COMMANDS: list[click.Command] = [eval_group]
