"""Who gets a digest this hour, in which batches, and the batches' reports merged.

The digest job runs every hour on the hour (UTC). A reader is due when
their local clock has reached their delivery hour, at most
`catchup_hours` later (so a failed or skipped hour is made up for, but no
digest arrives in the middle of the night), and nothing was sent to them
in the last 20 hours. Readers in zones with half-hour offsets get theirs
in the first run after their hour starts; on the day clocks go back the
repeated hour finds the digest already sent.

Batches run in parallel: Modal `.map` in production, bounded asyncio
concurrency on one machine. The first batch runs alone first and holds one
reader per language, so every summary the other batches share is written
(and cached) once instead of by several containers at the same time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from infra import db
from infra.logs import redact
from infra.readers import Reader, list_readers
from infra.store import Store, utcnow

_LOGGER = logging.getLogger(__name__)

RECENTLY_SENT = timedelta(hours=20)
_STATUS_ORDER = ["ok", "skipped", "degraded", "failed"]


@dataclass(frozen=True)
class DeliveryPlan:
    due: list[str]
    batches: list[list[str]]


def local_hour(reader: Reader, now: datetime) -> int:
    """The reader's wall-clock hour at `now` (UTC when the zone is unknown)."""
    try:
        zone = ZoneInfo(reader.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        _LOGGER.warning("reader %s has unknown time zone; using UTC", reader.id)
        zone = ZoneInfo("UTC")
    return now.astimezone(zone).hour


def is_due(reader: Reader, now: datetime, catchup_hours: int) -> bool:
    """True from the reader's delivery hour until `catchup_hours` after it."""
    late_by = (local_hour(reader, now) - reader.delivery_hour) % 24
    return reader.active and late_by < max(1, catchup_hours)


def plan_delivery(
    store: Store,
    now: datetime | None = None,
    *,
    batch_size: int = 50,
    catchup_hours: int = 3,
) -> DeliveryPlan:
    """The readers due now, without those served recently, cut into batches."""
    now = now or utcnow()
    candidates = [
        r
        for r in list_readers(store, active_only=True)
        if is_due(r, now, catchup_hours)
    ]
    served = _recently_served(store, [r.id for r in candidates], now)
    due = [r for r in candidates if r.id not in served]
    batches = plan_batches(due, batch_size)
    _LOGGER.info(
        "delivery plan: %d readers due (%d already served), %d batches",
        len(due),
        len(candidates) - len(due),
        len(batches),
    )
    return DeliveryPlan(due=[r.id for r in due], batches=batches)


def _recently_served(store: Store, reader_ids: list[str], now: datetime) -> set[str]:
    if not reader_ids:
        return set()
    query = (
        select(db.deliveries.c.reader_id)
        .where(db.deliveries.c.reader_id.in_(reader_ids))
        .where(db.deliveries.c.status == "sent")
        .where(db.deliveries.c.updated_at >= now - RECENTLY_SENT)
    )
    with store.begin() as conn:
        return {str(row.reader_id) for row in conn.execute(query)}


def plan_batches(readers: list[Reader], size: int) -> list[list[str]]:
    """Batches of reader ids; the first holds one reader of each language."""
    if not readers:
        return []
    size = max(1, size)
    pilot: list[Reader] = []
    for reader in readers:
        if reader.lang not in {p.lang for p in pilot}:
            pilot.append(reader)
    pilot_ids = [r.id for r in pilot]
    rest = [r for r in readers if r.id not in pilot_ids]
    if len(pilot_ids) < size:
        take = size - len(pilot_ids)
        pilot_ids += [r.id for r in rest[:take]]
        rest = rest[take:]
    rest_ids = [r.id for r in rest]
    return [pilot_ids] + [rest_ids[i : i + size] for i in range(0, len(rest_ids), size)]


def run_batches(
    batches: list[list[str]],
    deliver: Callable[[list[str]], dict[str, Any]],
    map_rest: Callable[[list[list[str]]], Iterable[dict[str, Any] | BaseException]],
) -> list[dict[str, Any]]:
    """Run the pilot batch alone, then the rest through `map_rest`, in parallel."""
    if not batches:
        return []
    results: list[dict[str, Any] | BaseException] = []
    try:
        results.append(deliver(batches[0]))
    except Exception as error:
        _LOGGER.error("pilot batch failed", exc_info=True)
        results.append(error)
    if batches[1:]:
        results.extend(map_rest(batches[1:]))
    return [_as_report(r, len(b)) for r, b in zip(results, batches, strict=True)]


def map_locally(
    deliver: Callable[[list[str]], dict[str, Any]], concurrency: int
) -> Callable[[list[list[str]]], list[dict[str, Any] | BaseException]]:
    """`map_rest` for one machine: threads under an asyncio semaphore."""

    def map_rest(batches: list[list[str]]) -> list[dict[str, Any] | BaseException]:
        async def run_all() -> list[dict[str, Any] | BaseException]:
            gate = asyncio.Semaphore(max(1, concurrency))

            async def one(batch: list[str]) -> dict[str, Any]:
                async with gate:
                    return await asyncio.to_thread(deliver, batch)

            return await asyncio.gather(
                *(one(b) for b in batches), return_exceptions=True
            )

        return asyncio.run(run_all())

    return map_rest


def _as_report(result: dict[str, Any] | BaseException, size: int) -> dict[str, Any]:
    if isinstance(result, BaseException):
        return {
            "status": "failed",
            "error": redact(f"{type(result).__name__}: {result}")[:500],
            "batches_failed": 1,
            "readers_failed": size,
        }
    return result


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report for the run from its batches: counts add up, lists join.

    The budget is a snapshot, so the largest month-to-date figure wins.
    Status is the worst batch's, except that some failed batches among
    good ones make the run degraded rather than failed.
    """
    merged: dict[str, Any] = {}
    for report in reports:
        _add_into(merged, {k: v for k, v in report.items() if k != "budget"})
        budget = report.get("budget")
        if isinstance(budget, dict):
            spent = budget.get("month_to_date_usd", 0)
            if spent >= merged.get("budget", {}).get("month_to_date_usd", -1):
                merged["budget"] = dict(budget)

    statuses = [str(r.get("status", "ok")) for r in reports]
    worst = max(statuses, key=_status_rank, default="ok")
    if worst == "failed" and any(s != "failed" for s in statuses):
        worst = "degraded"
    merged["status"] = worst
    errors = [str(r["error"]) for r in reports if r.get("error")]
    if errors:
        merged["error"] = "; ".join(errors)[:1000]
    merged["batches"] = len(reports)
    return merged


def _status_rank(status: str) -> int:
    return _STATUS_ORDER.index(status) if status in _STATUS_ORDER else 0


def _add_into(into: dict[str, Any], report: dict[str, Any]) -> None:
    for key, value in report.items():
        current = into.get(key)
        if key == "status":
            into[key] = max(str(current or "ok"), str(value), key=_status_rank)
        elif key == "error":
            into[key] = f"{current}; {value}" if current else value
        elif isinstance(value, bool):
            into[key] = bool(current) or value
        elif isinstance(value, (int, float)):
            into[key] = (current if isinstance(current, (int, float)) else 0) + value
        elif isinstance(value, dict):
            if not isinstance(current, dict):
                current = into[key] = {}
            _add_into(current, value)
        elif isinstance(value, list):
            into[key] = (current if isinstance(current, list) else []) + value
        elif current is None:
            into[key] = value
