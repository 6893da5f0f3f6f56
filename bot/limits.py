"""Pacing for Telegram sends: about 30 messages a second overall, one a second per chat.

Sends are spread evenly, a little under the documented limit, rather than
sent in bursts. The gap is measured between the moments sends are actually
let go, not between planned slots, so an event loop that wakes late never
makes up for it with a burst. A 429 pauses the chat it was about; several in
a row, with no success between them, mean the whole bot is flooding, and
then every chat waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

_LOGGER = logging.getLogger(__name__)

_Json = dict[str, Any]

DEFAULT_RATE = 29.0
DEFAULT_CHAT_INTERVAL = 1.0
FLOOD_STREAK = 3
# Seconds of late wake-up the pace absorbs instead of passing on to later sends.
_WAKE_SLACK = 0.002
_PRUNE_EVERY = 1024


class RateLimiter:
    """Hands out send slots: `rate` per second overall, one per chat per interval."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        chat_interval: float = DEFAULT_CHAT_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or chat_interval < 0:
            raise ValueError("rate must be positive and chat_interval not negative")
        self.rate = rate
        self.chat_interval = chat_interval
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._lock: asyncio.Lock | None = None
        self._last_grant = float("-inf")
        self._chat_ready: dict[str, float] = {}
        self._paused_until = 0.0
        self._streak = 0
        self._granted = 0

    async def wait(self, chat_id: str | int) -> None:
        """Sleep until this chat may be sent to and the global gap has passed."""
        chat = str(chat_id)
        if self._lock is None:
            self._lock = asyncio.Lock()
        while True:
            ready = self._chat_ready.get(chat, 0.0) - self._clock()
            if ready > 0:
                # Waiting for one chat never holds up the others.
                await self._sleep(ready)
                continue
            async with self._lock:
                if self._chat_ready.get(chat, 0.0) > self._clock():
                    continue  # another send to this chat went first
                while True:
                    now = self._clock()
                    due = max(self._last_grant + self._interval, self._paused_until)
                    if due <= now:
                        break
                    await self._sleep(due - now)
                # Waking a little late is normal: that little is not passed on.
                self._last_grant = due if now - due <= _WAKE_SLACK else now
                self._chat_ready[chat] = now + self.chat_interval
                self._granted += 1
                if self._granted % _PRUNE_EVERY == 0:
                    self._prune(now)
                return

    def succeeded(self) -> None:
        """A send went through: the run of 429s, if any, is over."""
        self._streak = 0

    def retry_after(self, chat_id: str | int, seconds: float) -> None:
        """A 429: hold this chat, and every chat if 429s keep coming."""
        until = self._clock() + max(seconds, 0.0)
        chat = str(chat_id)
        self._chat_ready[chat] = max(self._chat_ready.get(chat, 0.0), until)
        self._streak += 1
        if self._streak >= FLOOD_STREAK and until > self._paused_until:
            self._paused_until = until
            _LOGGER.warning(
                "%d flood replies in a row: pausing every chat for %.1f s",
                self._streak,
                seconds,
            )

    def _prune(self, now: float) -> None:
        stale = [chat for chat, ready in self._chat_ready.items() if ready < now]
        for chat in stale:
            del self._chat_ready[chat]


class TelegramPacing(BaseRateLimiter[None]):
    """Puts every send of a PTB bot (handler replies included) through a RateLimiter.

    It paces and notes 429s but does not retry: a delivery retries through its
    channel, and a reply that meets a 429 goes to the error handler.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | _Json | list[_Json]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> bool | _Json | list[_Json]:
        chat_id = data.get("chat_id")
        if chat_id is None or not _is_send(endpoint):
            return await callback(*args, **kwargs)
        await self.limiter.wait(chat_id)
        try:
            result = await callback(*args, **kwargs)
        except RetryAfter as exc:
            self.limiter.retry_after(chat_id, retry_after_seconds(exc))
            raise
        self.limiter.succeeded()
        return result


def _is_send(endpoint: str) -> bool:
    return (
        endpoint.startswith("send") and endpoint != "sendChatAction"
    ) or endpoint in ("copyMessage", "forwardMessage")


def retry_after_seconds(exc: RetryAfter) -> float:
    """Seconds to wait from a 429, whether PTB gives an int or a timedelta."""
    with warnings.catch_warnings():
        # PTB 22 warns that `retry_after` will become a timedelta; both are read here.
        warnings.simplefilter("ignore")
        value = exc.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)
