"""`digest eval ...`: score pipeline stages on labeled files.

Other stages add their own commands to `eval_group` (`eval factcheck`,
`eval rank`); this module holds `eval dedup`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from functions.cluster import ClusterConfig
from functions.dedup_eval import LabeledFileError, evaluate, load_labeled, render
from infra.config import get_settings
from infra.embed import get_embedder
from infra.store import Store
from infra.vector import IndexUnavailable, LocalVectorIndex, UpstashVectorIndex

DEDUP_LABELED = Path(__file__).resolve().parent / "samples" / "dedup_labeled.jsonl"
EVAL_NAMESPACE = "digest-eval"


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
    store = Store("sqlite://")
    local = LocalVectorIndex(store, get_embedder(settings.embedder))
    index: LocalVectorIndex | UpstashVectorIndex = local
    if index_name == "upstash":
        url, token = (
            settings.upstash_vector_rest_url,
            settings.upstash_vector_rest_token,
        )
        if not url or token is None:
            raise click.ClickException(
                "set UPSTASH_VECTOR_REST_URL and UPSTASH_VECTOR_REST_TOKEN to "
                "evaluate with Upstash"
            )
        index = UpstashVectorIndex(
            url,
            token.get_secret_value(),
            timeout_s=max(settings.upstash_vector_timeout_s, 30.0),
            namespace=EVAL_NAMESPACE,
        )

    config = ClusterConfig.from_settings(settings)
    try:
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


COMMANDS: list[click.Command] = [eval_group]
