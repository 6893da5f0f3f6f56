"""The monthly budget and each reader's daily cap, checked before every call.

Below the soft line (60% of `DIGEST_BUDGET_USD` by default) every call is
allowed. Past it the layer degrades as `DIGEST_BUDGET_SOFT_MODE` says:
a cheaper model per provider, and optional calls refused. Past the hard
line no call is made. Calls a reader can trigger carry the reader's id
and stop at a daily cap, so no one reader can spend the month.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from infra.llm.ledger import Ledger, budget_state, month_start

_LOGGER = logging.getLogger(__name__)


class BudgetGuard:
    def __init__(
        self,
        ledger: Ledger,
        *,
        budget_usd: float,
        soft_fraction: float = 0.6,
        hard_fraction: float = 1.0,
        soft_mode: str = "cheap-model,skip-optional",
        refresh_s: float = 60.0,
        reader_daily_usd: float = 0.05,
        reader_daily_calls: int = 20,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.budget_usd = budget_usd
        self.soft_fraction = soft_fraction
        self.hard_fraction = hard_fraction
        self.soft_mode = {m.strip() for m in soft_mode.split(",") if m.strip()}
        self.refresh_s = refresh_s
        self.reader_daily_usd = reader_daily_usd
        self.reader_daily_calls = reader_daily_calls
        self._clock = clock
        self._now = now
        self._stored = 0.0
        self._unsaved = 0.0
        self._loaded_at: float | None = None
        self._month: datetime | None = None
        self._last_state = "ok"

    def spent(self) -> float:
        """Month to date: the ledger, re-read now and then, plus our own calls."""
        month = month_start(self._now())
        stale = self._loaded_at is None or (
            self._clock() - self._loaded_at >= self.refresh_s
        )
        if stale or month != self._month:
            # Other processes (the webhook, a manual run) spend from the same budget.
            self._stored = self.ledger.month_to_date(self._now())
            self._unsaved = 0.0
            self._loaded_at = self._clock()
            self._month = month
        return self._stored + self._unsaved

    def add(self, usd: float) -> None:
        """Count a call already written to the ledger."""
        self._unsaved += usd

    def state(self) -> str:
        state = budget_state(
            self.spent(), self.budget_usd, self.soft_fraction, self.hard_fraction
        )
        if state != self._last_state:
            _LOGGER.warning(
                "llm budget %s: $%.4f of $%.2f spent this month",
                {
                    "ok": "back under the soft line",
                    "soft": "past the soft line",
                    "hard": "past the hard line, no more calls",
                }[state],
                self.spent(),
                self.budget_usd,
            )
            self._last_state = state
        return state

    @property
    def cheap_models(self) -> bool:
        return "cheap-model" in self.soft_mode and self.state() == "soft"

    def refusal(
        self, *, optional: bool, reader_id: str | None
    ) -> dict[str, str] | None:
        """Why this call may not be made now, or None when it may."""
        state = self.state()
        spent = self.spent()
        if state == "hard":
            return {
                "budget": f"hard line: ${spent:.2f} of ${self.budget_usd:.2f} spent "
                "this month (DIGEST_BUDGET_USD)"
            }
        if state == "soft" and optional and "skip-optional" in self.soft_mode:
            return {
                "budget": f"soft line: ${spent:.2f} of ${self.budget_usd:.2f} spent, "
                "optional calls are off"
            }
        if reader_id is not None:
            usd, calls = self.ledger.reader_today(reader_id, self._now())
            if usd >= self.reader_daily_usd or calls >= self.reader_daily_calls:
                return {
                    "budget": f"reader daily cap: {calls} calls, ${usd:.4f} today "
                    "(DIGEST_READER_DAILY_USD, DIGEST_READER_DAILY_CALLS)"
                }
        return None
