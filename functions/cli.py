"""The `digest` command line."""

from __future__ import annotations

import logging
import sys

import click

from infra.config import get_settings
from infra.logs import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def cli(verbose: bool) -> None:
    """China to Watch: a personalized, fact-checked digest of China news.

    Start with `digest demo`: the whole job offline on bundled sample feeds.
    """
    settings = get_settings()
    setup_logging("DEBUG" if verbose else settings.log_level, stream=sys.stderr)


def _register() -> None:
    from functions import cli_collect

    for command in cli_collect.COMMANDS:
        cli.add_command(command)
    from functions import cli_ops

    for command in cli_ops.COMMANDS:
        cli.add_command(command)


def main() -> None:
    _register()
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        logging.getLogger(__name__).warning("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
