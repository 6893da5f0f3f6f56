"""What the bot reads besides digests: the configured sources and their health.

Digests themselves come from the pipeline (`functions.run.edit_for_readers`),
so `/digest`, `digest send` and the scheduled run send the same edited,
fact-checked summaries.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from functions.models import Source
from functions.sources import SourcesError, load_sources
from infra.store import Store

_LOGGER = logging.getLogger(__name__)


def configured_sources(path: Path) -> list[Source]:
    """The configured sources, or none (logged) if the file cannot be used."""
    try:
        return load_sources(path)
    except SourcesError as exc:
        _LOGGER.warning("no sources for the bot: %s", exc)
        return []


def source_health(store: Store) -> dict[str, dict[str, Any]]:
    """Stored fetch state per source name."""
    return {state["name"]: state for state in store.all_source_states()}
