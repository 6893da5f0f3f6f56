"""The editorial stage of a run: summaries, fact-check, and one digest per reader."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from functions.chat import ChatChain
from functions.extractive import base_lang
from functions.models import Digest, Item, Source, Story
from functions.opening import opening_line
from functions.rank import Relevance, quiet_day_note, rank_for_reader
from functions.summarize import summarize_stories
from infra.config import Settings
from infra.readers import Reader
from infra.store import Store

_LOGGER = logging.getLogger(__name__)


@dataclass
class EditorialReport:
    """What the run report says about this stage."""

    summaries: Counter[str] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)
    digests: int = 0
    quiet: int = 0
    openings: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "summaries": dict(sorted(self.summaries.items())),
            "verdicts": dict(sorted(self.verdicts.items())),
            "digests": self.digests,
            "quiet_days": self.quiet,
            "openings": self.openings,
        }


async def build_digests(
    store: Store,
    chain: ChatChain | None,
    stories: list[Story],
    items_by_id: dict[str, Item],
    readers: list[Reader],
    *,
    now: datetime,
    edition: str,
    settings: Settings,
    sources: dict[str, Source] | None = None,
    relevance: Relevance | None = None,
    report: EditorialReport | None = None,
) -> list[Digest]:
    """Each story summarized once per language readers want, then each
    active reader's digest; a reader with nothing worth sending gets a note."""
    report = report if report is not None else EditorialReport()
    active = [r for r in readers if r.active]
    names = {n: s.display_name for n, s in (sources or {}).items()}
    summaries = await summarize_stories(
        store,
        chain,
        stories,
        items_by_id,
        sorted({base_lang(r.lang) for r in active}),
        settings=settings,
        source_names=names,
        stats=report.summaries,
    )
    report.verdicts.update(s.verdict for s in summaries.values())

    digests: list[Digest] = []
    for reader in active:
        entries = rank_for_reader(
            reader,
            stories,
            summaries,
            store=store,
            now=now,
            settings=settings,
            edition=edition,
            sources=sources,
            relevance=relevance,
        )
        if entries:
            opening = await opening_line(chain, reader, entries, settings=settings)
            report.openings += bool(opening)
        else:
            opening = quiet_day_note(reader)
            report.quiet += 1
        digests.append(
            Digest(
                reader_id=reader.id,
                edition=edition,
                lang=base_lang(reader.lang),
                generated_at=now,
                entries=entries,
                opening=opening,
            )
        )
    report.digests = len(digests)
    _LOGGER.info(
        "edited %d digests from %d stories: %s",
        len(digests),
        len(stories),
        report.as_dict(),
    )
    return digests
