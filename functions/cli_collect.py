"""`digest fetch`, `digest items`, `digest run` and `digest demo`."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
