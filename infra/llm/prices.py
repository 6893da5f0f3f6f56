"""The dated price table (`prices.toml`) and what one call cost.

Prices are configuration: vendors change them more often than code
changes. Each entry names a provider, a model and the moment its rates
took effect; the entry in force when a call ran prices it. An entry has
either `standard` rates or `peak` and `off_peak` rates with a named
schedule of peak hours (DeepSeek bills its busy hours double).
"""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from infra.llm.providers import Usage

_LOGGER = logging.getLogger(__name__)

_WINDOW_RE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
PER_TOKENS = 1_000_000


class PriceTableError(ValueError):
    """`prices.toml` is missing a field or holds one that makes no sense."""


@dataclass(frozen=True)
class Rates:
    """Dollars per million tokens."""

    input_cache_hit: float
    input_cache_miss: float
    output: float

    def cost(self, usage: Usage) -> float:
        return (
            usage.cache_hit_tokens * self.input_cache_hit
            + usage.cache_miss_tokens * self.input_cache_miss
            + usage.completion_tokens * self.output
        ) / PER_TOKENS


@dataclass(frozen=True)
class Schedule:
    """Peak hours in a vendor's local time, on some days of the week."""

    name: str
    timezone: ZoneInfo
    weekdays: frozenset[int]  # ISO numbers: Monday is 1
    windows: tuple[tuple[time, time], ...]

    def is_peak(self, at: datetime) -> bool:
        local = at.astimezone(self.timezone)
        if local.isoweekday() not in self.weekdays:
            return False
        clock = local.time().replace(tzinfo=None)
        return any(start <= clock < end for start, end in self.windows)


@dataclass(frozen=True)
class PriceEntry:
    provider: str
    model: str
    since: datetime
    aliases: tuple[str, ...] = ()
    standard: Rates | None = None
    peak: Rates | None = None
    off_peak: Rates | None = None
    schedule: Schedule | None = None
    source: str = ""

    def rates_at(self, at: datetime) -> tuple[str, Rates]:
        """The tier in force at `at` and its rates."""
        if self.schedule is not None and self.peak and self.off_peak:
            if self.schedule.is_peak(at):
                return "peak", self.peak
            return "off_peak", self.off_peak
        assert self.standard is not None
        return "standard", self.standard


class PriceTable:
    """Every dated entry of `prices.toml`, looked up by provider, model and time."""

    def __init__(self, entries: list[PriceEntry]) -> None:
        self.entries = sorted(entries, key=lambda e: e.since)
        self._warned: set[tuple[str, str]] = set()

    @classmethod
    def load(cls, path: Path) -> PriceTable:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            _LOGGER.warning("no price table at %s: every call is priced at $0", path)
            return cls([])
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriceTable:
        schedules = {
            name: _schedule(name, spec)
            for name, spec in (data.get("schedules") or {}).items()
        }
        return cls([_entry(spec, schedules) for spec in data.get("prices") or []])

    def entry(self, provider: str, model: str, at: datetime) -> PriceEntry | None:
        """The latest entry for this model that had taken effect at `at`."""
        found = None
        for entry in self.entries:
            if entry.provider != provider:
                continue
            if model != entry.model and model not in entry.aliases:
                continue
            if entry.since <= at:
                found = entry
        return found

    def cost(
        self, provider: str, model: str, usage: Usage, at: datetime
    ) -> tuple[float, str]:
        """Dollars for one call and the tier that priced it."""
        entry = self.entry(provider, model, at)
        if entry is None:
            if (provider, model) not in self._warned:
                self._warned.add((provider, model))
                _LOGGER.warning(
                    "no price for %s model %s: its calls count as $0 against "
                    "the budget until prices.toml lists it",
                    provider,
                    model,
                )
            return 0.0, "unpriced"
        tier, rates = entry.rates_at(at)
        return rates.cost(usage), tier

    def is_peak(self, provider: str, model: str, at: datetime) -> bool:
        entry = self.entry(provider, model, at)
        return entry is not None and entry.rates_at(at)[0] == "peak"


def _schedule(name: str, spec: dict[str, Any]) -> Schedule:
    windows = []
    for text in spec.get("peak_hours") or []:
        match = _WINDOW_RE.match(str(text).strip())
        if not match:
            raise PriceTableError(
                f"schedule {name}: bad window {text!r}, use HH:MM-HH:MM"
            )
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        end = time(23, 59, 59, 999999) if (h2, m2) == (24, 0) else time(h2, m2)
        windows.append((time(h1, m1), end))
    weekdays = frozenset(int(d) for d in spec.get("weekdays", range(1, 8)))
    if not weekdays <= set(range(1, 8)):
        raise PriceTableError(f"schedule {name}: weekdays are 1 (Monday) to 7")
    return Schedule(
        name=name,
        timezone=ZoneInfo(spec.get("timezone", "UTC")),
        weekdays=weekdays,
        windows=tuple(windows),
    )


def _rates(spec: Any, where: str) -> Rates | None:
    if spec is None:
        return None
    try:
        return Rates(
            input_cache_hit=float(
                spec.get("input_cache_hit", spec["input_cache_miss"])
            ),
            input_cache_miss=float(spec["input_cache_miss"]),
            output=float(spec["output"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PriceTableError(
            f"{where}: rates need input_cache_miss and output"
        ) from exc


def _since(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    raise PriceTableError(f"{where}: `since` must be a TOML date or date-time")


def _entry(spec: dict[str, Any], schedules: dict[str, Schedule]) -> PriceEntry:
    where = f"price {spec.get('provider')}/{spec.get('model')}"
    if not spec.get("provider") or not spec.get("model"):
        raise PriceTableError(f"{where}: provider and model are required")
    schedule = None
    if spec.get("schedule"):
        schedule = schedules.get(spec["schedule"])
        if schedule is None:
            raise PriceTableError(f"{where}: unknown schedule {spec['schedule']!r}")
    entry = PriceEntry(
        provider=str(spec["provider"]),
        model=str(spec["model"]),
        since=_since(spec.get("since"), where),
        aliases=tuple(spec.get("aliases") or ()),
        standard=_rates(spec.get("standard"), where),
        peak=_rates(spec.get("peak"), where),
        off_peak=_rates(spec.get("off_peak"), where),
        schedule=schedule,
        source=str(spec.get("source", "")),
    )
    tiered = entry.peak is not None and entry.off_peak is not None
    if entry.standard is None and not (tiered and schedule is not None):
        raise PriceTableError(
            f"{where}: give `standard` rates, or `peak`, `off_peak` and a `schedule`"
        )
    return entry
