"""A circuit breaker per provider, so one outage does not cost every call its retries.

After `threshold` failures in a row the breaker opens and the provider is
skipped for `cooldown_s`. Then one call is let through (half open): success
closes the breaker, failure opens it for another cooldown. A bad key or an
empty balance opens it at once (`trip`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.threshold = max(1, threshold)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_running = False
        self.times_opened = 0

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self._clock() - self.opened_at >= self.cooldown_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """May a call go to this provider now? Half open lets exactly one through."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def release(self) -> None:
        """A call let through ended without a verdict on the provider's health."""
        self._trial_running = False

    def success(self) -> None:
        if self.opened_at is not None:
            _LOGGER.info(
                "llm provider %s is answering again: breaker closed", self.name
            )
        self.failures = 0
        self.opened_at = None
        self._trial_running = False

    def failure(self) -> None:
        self.failures += 1
        if self._trial_running or self.failures >= self.threshold:
            self._open(f"{self.failures} failures in a row")
        self._trial_running = False

    def trip(self, why: str) -> None:
        """Open at once: the provider will refuse every call the same way."""
        self.failures = max(self.failures, self.threshold)
        self._open(why)
        self._trial_running = False

    def _open(self, why: str) -> None:
        if self.state != "open":
            self.times_opened += 1
            _LOGGER.warning(
                "llm provider %s skipped for %.0f s: %s",
                self.name,
                self.cooldown_s,
                why,
            )
        self.opened_at = self._clock()
