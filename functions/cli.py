"""The `digest` command line."""

from __future__ import annotations

import logging
import sys

import click
from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError, OperationalError

from infra.config import get_settings
from infra.logs import redact, setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def cli(verbose: bool) -> None:
    """China to Watch: a personalized, fact-checked digest of China news.

    Start with `digest demo`: the whole job offline on bundled sample feeds.
    """
    settings = get_settings()
    setup_logging("DEBUG" if verbose else settings.log_level, stream=sys.stderr)


def _register() -> None:
    """Add each area's commands; the eval group also gathers the editorial evals."""
    from bot import cli as bot_cli
    from functions import (
        cli_collect,
        cli_embed,
        cli_eval,
        cli_eval_editorial,
        cli_llm,
        cli_ops,
    )

    for module in (cli_collect, cli_eval, cli_llm, cli_embed, cli_ops, bot_cli):
        for command in module.COMMANDS:
            cli.add_command(command)
    cli_eval.eval_group.add_command(cli_eval_editorial.factcheck_cmd)
    cli_eval.eval_group.add_command(cli_eval_editorial.rank_cmd)


def main() -> None:
    _register()
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        logging.getLogger(__name__).warning("interrupted")
        sys.exit(130)
    except ValidationError as exc:
        sys.exit(f"error: configuration: {_describe_settings_error(exc)}")
    except (ArgumentError, OperationalError) as exc:
        sys.exit(
            "error: cannot open the state store (DATABASE_URL, else DIGEST_DB): "
            + redact(str(exc).splitlines()[0])
        )


def _describe_settings_error(exc: ValidationError) -> str:
    """Which variables are wrong and why, without echoing their values."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())) or "settings"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) + " (see .env.example)"


if __name__ == "__main__":
    main()
