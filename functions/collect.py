"""The collect stage: fetch, parse, normalize and store every source's items.

It also keeps each source's health: validators for conditional GET, the
last success, consecutive failures with a growing back-off that ends in
a pause, and staleness when a feed answers but publishes nothing new.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from functions.fetch import FetchOutcome, FetchPolicy, fetch_all
from functions.models import Item, Source
from functions.normalize import drop_ambiguous_keys, normalize_entry
from functions.parse import FeedError, parse_feed
from infra.config import Settings
from infra.store import Store, utcnow

_LOGGER = logging.getLogger(__name__)

BACKOFF_AFTER = 3  # consecutive failures before a source is skipped for a while
PAUSE_AFTER = 10  # consecutive failures before a source is paused for a week
MAX_BACKOFF = timedelta(hours=24)
PAUSE_FOR = timedelta(days=7)


@dataclass
class SourceResult:
    """One line of the fetch table and of the run report."""

    name: str
    url: str
    # ok | not_modified | stale | failed | blocked | empty | backoff | paused
    status: str
    fetched: int = 0
    new: int = 0
    updated: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    bytes: int = 0
    attempts: int = 0
    elapsed_s: float = 0.0
    consecutive_failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["elapsed_s"] = round(self.elapsed_s, 3)
        return data


@dataclass
class CollectReport:
    sources: list[SourceResult]
    new_items: list[Item]
    items_seen: int
    duration_s: float

    @property
    def items_new(self) -> int:
        return len(self.new_items)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sources": [s.as_dict() for s in self.sources],
            "items_new": self.items_new,
            "items_seen": self.items_seen,
            "sources_ok": sum(s.status in ("ok", "not_modified") for s in self.sources),
            "sources_failed": sum(
                s.status in ("failed", "blocked", "empty") for s in self.sources
            ),
            "duration_s": round(self.duration_s, 3),
        }


def policy_from(settings: Settings) -> FetchPolicy:
    return FetchPolicy(
        timeout_s=settings.fetch_timeout_s,
        deadline_s=settings.fetch_deadline_s,
        max_bytes=settings.fetch_max_bytes,
        retries=settings.fetch_retries,
        concurrency=settings.fetch_concurrency,
        backoff_s=settings.fetch_backoff_s,
        backoff_max_s=settings.fetch_backoff_max_s,
        max_retry_after_s=settings.fetch_max_retry_after_s,
    )


def items_from_outcome(
    outcome: FetchOutcome, now: datetime
) -> tuple[list[Item], list[str]]:
    """Parse and normalize one fetched body; raises FeedError when it has no items.

    An entry that cannot be normalized is skipped with a warning; it never
    costs the feed its other items.
    """
    assert outcome.body is not None
    parsed = parse_feed(
        outcome.body,
        url=outcome.final_url,
        content_type=outcome.headers.get("content-type"),
    )
    feed_lang = parsed.feed.get("language") if parsed.feed else None
    warnings = list(parsed.warnings)
    items = []
    skipped = 0
    for entry in parsed.entries:
        try:
            item = normalize_entry(
                entry,
                outcome.source,
                feed_url=outcome.final_url,
                feed_lang=feed_lang,
                now=now,
            )
        except Exception:
            skipped += 1
            _LOGGER.warning(
                "%s: skipped an entry that could not be read",
                outcome.source.name,
                exc_info=True,
            )
            continue
        if item is not None:
            items.append(item)
    if skipped:
        warnings.append(
            f"skipped {skipped} unreadable entr{'y' if skipped == 1 else 'ies'}"
        )
    if not items:
        raise FeedError("entries had neither title nor text")
    warnings += drop_ambiguous_keys(items)
    return items, warnings


async def collect(
    sources: Sequence[Source],
    store: Store,
    settings: Settings,
    *,
    now: datetime | None = None,
    on_source_done: Callable[[FetchOutcome], None] | None = None,
) -> CollectReport:
    """Fetch every source, store its items, and record each source's health."""
    started = time.monotonic()
    now = now or utcnow()
    states = {s.name: store.get_source_state(s.name) for s in sources}

    due = [s for s in sources if not _paused(states[s.name], now)]
    skipped = [s for s in sources if s not in due]
    validators = {
        s.name: {
            "etag": states[s.name].get("etag"),
            "last_modified": states[s.name].get("last_modified"),
        }
        for s in due
    }
    outcomes = await fetch_all(
        due, policy_from(settings), validators=validators, on_done=on_source_done
    )

    results: list[SourceResult] = []
    new_items: list[Item] = []
    seen = 0
    for outcome in outcomes:
        result, items = _record(outcome, store, states[outcome.source.name], now)
        results.append(result)
        seen += result.fetched
        new_items.extend(items)
    for source in skipped:
        state = states[source.name]
        failures = int(state.get("consecutive_failures") or 0)
        until = state.get("paused_until")
        status = "paused" if failures >= PAUSE_AFTER else "backoff"
        results.append(
            SourceResult(
                source.name,
                source.url,
                status,
                error=f"{'paused' if status == 'paused' else 'backing off'} "
                f"until {until:%Y-%m-%d %H:%M} UTC after {failures} failure(s) "
                f"in a row; last: {state.get('last_error')}",
                consecutive_failures=failures,
            )
        )

    report = CollectReport(results, new_items, seen, time.monotonic() - started)
    _LOGGER.info(
        "collected %d sources: %d items seen, %d new, %d failed in %.1fs",
        len(sources),
        seen,
        len(new_items),
        report.as_dict()["sources_failed"],
        report.duration_s,
    )
    return report


def _paused(state: dict[str, Any], now: datetime) -> bool:
    until = state.get("paused_until")
    return bool(until and until > now)


def _record(
    outcome: FetchOutcome, store: Store, state: dict[str, Any], now: datetime
) -> tuple[SourceResult, list[Item]]:
    """Store one source's items and health; a bug here fails only this source."""
    try:
        return _store_outcome(outcome, store, state, now)
    except Exception as exc:
        _LOGGER.exception(
            "source %s: could not store what it gave", outcome.source.name
        )
        result = SourceResult(
            outcome.source.name,
            outcome.source.url,
            "failed",
            error=f"internal error: {type(exc).__name__}: {exc}",
            bytes=outcome.bytes_received,
            attempts=outcome.attempts,
            elapsed_s=outcome.elapsed_s,
        )
        _save_health(store, outcome.source.name, state, now, result, {})
        return result, []


def _store_outcome(
    outcome: FetchOutcome, store: Store, state: dict[str, Any], now: datetime
) -> tuple[SourceResult, list[Item]]:
    source = outcome.source
    result = SourceResult(
        source.name,
        source.url,
        outcome.status,
        error=outcome.error,
        bytes=outcome.bytes_received,
        attempts=outcome.attempts,
        elapsed_s=outcome.elapsed_s,
    )

    if outcome.status == "not_modified":
        _mark_stale(result, source, state.get("newest_item"), now)
        _save_health(store, source.name, state, now, result, {"last_success": now})
        return result, []

    if outcome.status != "ok":
        _save_health(
            store, source.name, state, now, result, {}, retry_after=outcome.retry_after
        )
        return result, []

    try:
        parsed, result.warnings = items_from_outcome(outcome, now)
    except FeedError as exc:
        result.status = "empty"
        result.error = str(exc)
        _save_health(store, source.name, state, now, result, {})
        return result, []

    upserted = store.upsert_items(parsed)
    new_ids = set(upserted.new)
    # A feed may carry one article twice (retitled): keep its latest version.
    items = list({i.id: i for i in parsed if i.id in new_ids}.values())
    result.fetched = len({i.id for i in parsed})
    result.new = len(new_ids)
    result.updated = len(set(upserted.updated) - new_ids)
    dated = [i.published for i in parsed if not i.published_estimated]
    newest = max(dated) if dated else None
    _mark_stale(result, source, newest, now)
    values: dict[str, Any] = {
        "etag": outcome.etag,
        "last_modified": outcome.last_modified,
        "last_success": now,
    }
    if newest:
        values["newest_item"] = newest
    _save_health(store, source.name, state, now, result, values)
    return result, items


def _mark_stale(
    result: SourceResult, source: Source, newest: datetime | None, now: datetime
) -> None:
    if newest and now - newest > timedelta(hours=source.max_age_hours):
        result.status = "stale"
        result.error = (
            f"newest item is {(now - newest).total_seconds() / 3600:.0f}h old "
            f"(limit {source.max_age_hours:g}h)"
        )


def _save_health(
    store: Store,
    name: str,
    state: dict[str, Any],
    now: datetime,
    result: SourceResult,
    values: dict[str, Any],
    *,
    retry_after: float | None = None,
) -> None:
    failed = result.status in ("failed", "blocked", "empty")
    failures = int(state.get("consecutive_failures") or 0) + 1 if failed else 0
    result.consecutive_failures = failures
    values.update(
        last_attempt=now,
        last_status=result.status,
        last_error=result.error,
        consecutive_failures=failures,
        paused_until=None,
    )
    until: datetime | None = None
    if failures >= PAUSE_AFTER:
        until = now + PAUSE_FOR
        result.error = (
            f"{result.error}; paused for {PAUSE_FOR.days} days after "
            f"{failures} failures in a row"
        )
        _LOGGER.warning(
            "source %s paused for %s after %d failures in a row: %s",
            name,
            PAUSE_FOR,
            failures,
            result.error,
        )
    elif failures >= BACKOFF_AFTER:
        until = now + min(timedelta(hours=2 ** (failures - BACKOFF_AFTER)), MAX_BACKOFF)
    if retry_after:
        # The server said when to come back: never sooner than that.
        asked = now + min(timedelta(seconds=retry_after), MAX_BACKOFF)
        until = max(until, asked) if until else asked
    values["paused_until"] = until
    store.save_source_state(name, **values)
