"""The call ledger and the result cache, in the state store.

A ledger row is written for every request sent to a vendor, whatever its
outcome, so the month's spend, each reader's day and the success rate of
every provider are read from one table. The cache keeps validated outputs
by content hash, prompt version and model, so an unchanged input is never
sent to a model twice.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from infra import db
from infra.store import Store, as_utc

_LOGGER = logging.getLogger(__name__)

# Days of spend the month-end projection extrapolates from.
PROJECTION_DAYS = 7


@dataclass
class CallRecord:
    at: datetime
    stage: str
    provider: str
    model: str
    outcome: str
    tier: str
    cost_usd: float = 0.0
    prompt_version: str = ""
    run_id: str | None = None
    source: str | None = None
    reader_id: str | None = None
    prompt_tokens: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    latency_ms: int = 0
    error: str | None = None


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def cache_key(model: str, prompt_version: str, content_hash: str) -> str:
    return hashlib.sha256(
        f"{model}\x1f{prompt_version}\x1f{content_hash}".encode()
    ).hexdigest()


class Ledger:
    """Reads and writes the `llm_calls` and `llm_cache` tables."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, call: CallRecord) -> None:
        with self.store.begin() as conn:
            conn.execute(insert(db.llm_calls).values(**asdict(call)))

    def spent_since(self, since: datetime) -> float:
        query = select(func.coalesce(func.sum(db.llm_calls.c.cost_usd), 0.0)).where(
            db.llm_calls.c.at >= since
        )
        with self.store.begin() as conn:
            return float(conn.execute(query).scalar_one())

    def month_to_date(self, now: datetime) -> float:
        return self.spent_since(month_start(now))

    def reader_today(self, reader_id: str, now: datetime) -> tuple[float, int]:
        """Dollars and calls one reader's requests cost since midnight UTC."""
        c = db.llm_calls.c
        query = select(
            func.coalesce(func.sum(c.cost_usd), 0.0), func.count(c.id)
        ).where(c.reader_id == reader_id, c.at >= day_start(now))
        with self.store.begin() as conn:
            usd, calls = conn.execute(query).one()
        return float(usd), int(calls)

    # cache -------------------------------------------------------------------

    def cached(self, keys: list[str]) -> list[dict[str, Any]]:
        """Stored answers for any of `keys`, in the order of `keys`."""
        c = db.llm_cache.c
        with self.store.begin() as conn:
            rows = conn.execute(
                select(c.key, c.value, c.provider, c.model).where(c.key.in_(keys))
            ).all()
        found = {
            row.key: {"value": row.value, "provider": row.provider, "model": row.model}
            for row in rows
        }
        return [found[k] for k in keys if k in found]

    def remember(
        self,
        key: str,
        *,
        value: Any,
        model: str,
        prompt_version: str,
        content_hash: str,
        provider: str,
        stage: str,
        now: datetime,
    ) -> None:
        try:
            with self.store.begin() as conn:
                conn.execute(
                    insert(db.llm_cache).values(
                        key=key,
                        value=value,
                        model=model,
                        prompt_version=prompt_version,
                        content_hash=content_hash,
                        provider=provider,
                        stage=stage,
                        created_at=now,
                    )
                )
        except IntegrityError:
            # Another worker stored the same answer first; either copy will do.
            _LOGGER.debug("cache entry %s already stored", key[:12])

    # reports -----------------------------------------------------------------

    def cost_report(
        self,
        now: datetime,
        *,
        budget_usd: float,
        soft_fraction: float,
        hard_fraction: float,
    ) -> dict[str, Any]:
        """Month to date by provider, model and stage, and a month-end projection."""
        start = month_start(now)
        c = db.llm_calls.c
        query = (
            select(
                c.provider,
                c.model,
                c.stage,
                c.outcome,
                func.count(c.id).label("calls"),
                func.coalesce(func.sum(c.cost_usd), 0.0).label("usd"),
                func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
                func.coalesce(func.sum(c.cache_hit_tokens), 0).label("hit"),
                func.coalesce(func.sum(c.completion_tokens), 0).label("completion"),
            )
            .where(c.at >= start)
            .group_by(c.provider, c.model, c.stage, c.outcome)
        )
        with self.store.begin() as conn:
            rows = conn.execute(query).all()
            first = conn.execute(select(func.min(c.at)).where(c.at >= start)).scalar()

        providers: dict[str, dict[str, Any]] = {}
        stages: dict[str, dict[str, Any]] = {}
        total = 0.0
        prompt_tokens = hit_tokens = 0
        for row in rows:
            usd = float(row.usd)
            total += usd
            prompt_tokens += int(row.prompt_tokens)
            hit_tokens += int(row.hit)
            p = providers.setdefault(
                row.provider,
                {
                    "calls": 0,
                    "ok": 0,
                    "refused": 0,
                    "failed": 0,
                    "usd": 0.0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "models": {},
                },
            )
            p["calls"] += row.calls
            p["usd"] += usd
            p["prompt_tokens"] += int(row.prompt_tokens)
            p["completion_tokens"] += int(row.completion)
            bucket = {"ok": "ok", "refused": "refused"}.get(row.outcome, "failed")
            p[bucket] += row.calls
            m = p["models"].setdefault(row.model, {"calls": 0, "usd": 0.0})
            m["calls"] += row.calls
            m["usd"] += usd
            s = stages.setdefault(row.stage, {"calls": 0, "usd": 0.0})
            s["calls"] += row.calls
            s["usd"] += usd

        projected = self._projection(now, total, as_utc(first))
        return {
            "month": start.strftime("%Y-%m"),
            "month_to_date_usd": round(total, 6),
            "projected_month_usd": round(projected, 6),
            "budget_usd": budget_usd,
            "soft_line_usd": round(budget_usd * soft_fraction, 6),
            "hard_line_usd": round(budget_usd * hard_fraction, 6),
            "state": budget_state(total, budget_usd, soft_fraction, hard_fraction),
            "prefix_cache_hit_rate": round(hit_tokens / prompt_tokens, 4)
            if prompt_tokens
            else None,
            "calls": providers,
            "stages": stages,
            "recent_runs": self.recent_runs(start),
        }

    def recent_runs(self, since: datetime, limit: int = 5) -> list[dict[str, Any]]:
        """Spend of the latest runs (by `run_id`), newest first."""
        c = db.llm_calls.c
        started = func.min(c.at).label("started")
        query = (
            select(
                c.run_id,
                started,
                func.count(c.id).label("calls"),
                func.coalesce(func.sum(c.cost_usd), 0.0).label("usd"),
            )
            .where(c.at >= since, c.run_id.is_not(None))
            .group_by(c.run_id)
            .order_by(started.desc())
            .limit(limit)
        )
        with self.store.begin() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "run_id": row.run_id,
                "started": (as_utc(row.started) or since).isoformat(),
                "calls": int(row.calls),
                "usd": round(float(row.usd), 6),
            }
            for row in rows
        ]

    def _projection(self, now: datetime, total: float, first: datetime | None) -> float:
        """Month to date plus the recent daily rate over the days left."""
        if first is None:
            return 0.0
        start = month_start(now)
        days_in_month = calendar.monthrange(start.year, start.month)[1]
        month_end = start + timedelta(days=days_in_month)
        window_start = max(now - timedelta(days=PROJECTION_DAYS), first)
        days = max((now - window_start).total_seconds() / 86400, 1.0)
        recent = self.spent_since(window_start)
        remaining = (month_end - now).total_seconds() / 86400
        return total + recent / days * max(remaining, 0.0)


def budget_state(
    spent: float, budget_usd: float, soft_fraction: float, hard_fraction: float
) -> str:
    """`ok`, `soft` (degraded) or `hard` (no calls) for a month's spend."""
    if budget_usd <= 0 or spent >= budget_usd * hard_fraction:
        return "hard"
    if spent >= budget_usd * soft_fraction:
        return "soft"
    return "ok"
