"""What can go wrong with a model call, and which of it is worth retrying.

    LLMError
    ├── LLMUnavailable        no answer for this item: use the extractive path
    ├── ModerationRefused     a vendor's content filter declined the input
    └── ProviderError         an error answer the vendor's SDK does not raise
        ├── MalformedResponse a 200 with no completion in it (keep-alive lines)
        └── BadOutput         a reply that is empty, cut, or not the JSON asked for

The openai SDK raises its own exceptions; they travel unchanged so callers
and logs see the vendor's words. `is_transient` decides what tenacity
retries: 429, 5xx, connection errors and timeouts. 400, 401, 402 and other
permanent errors are not retried, and neither is a moderation refusal.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import openai

# Statuses that say the vendor will keep refusing this key or model:
# the breaker opens at once instead of after several failures.
DISABLING_STATUSES = frozenset({401, 402, 403, 404})
_TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})

# DeepSeek answers with HTTP 400 "Content Exists Risk"; DashScope with the
# code DataInspectionFailed (natively) or data_inspection_failed (compatible mode).
_REFUSAL_MARKERS = (
    "content exists risk",
    "datainspectionfailed",
    "data_inspection_failed",
)


class LLMError(Exception):
    """Base of every error the LLM layer raises."""


class LLMUnavailable(LLMError):
    """No provider produced an answer; `reasons` says why, per provider."""

    def __init__(
        self,
        reasons: Mapping[str, str],
        *,
        refused_by: list[str] | None = None,
    ) -> None:
        self.reasons = dict(reasons)
        self.refused_by = list(refused_by or [])
        detail = "; ".join(f"{k}: {v}" for k, v in self.reasons.items()) or "no reason"
        super().__init__(f"no LLM answer ({detail})")

    @property
    def all_refused(self) -> bool:
        """Every provider that was asked declined the content itself."""
        return bool(self.refused_by) and set(self.refused_by) == set(self.reasons)


class ModerationRefused(LLMError):
    """A vendor's content filter declined this input; another vendor may not."""

    def __init__(self, provider: str, message: str = "") -> None:
        self.provider = provider
        self.message = message
        super().__init__(f"{provider} refused the content: {message}".rstrip(": "))


class ProviderError(LLMError):
    """An error answer from a vendor whose SDK returns errors instead of raising."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.provider = provider
        self.detail = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        label = " ".join(str(x) for x in (provider, status, code) if x)
        super().__init__(f"{label}: {message}" if message else label)

    @property
    def transient(self) -> bool:
        if self.status is None:
            return True
        return self.status >= 500 or self.status in _TRANSIENT_STATUSES


class MalformedResponse(ProviderError):
    """A 200 whose body is no completion at all: blank keep-alive lines, cut JSON."""


class BadOutput(ProviderError):
    """The model answered, but not with usable JSON: empty, cut, prose, invalid."""

    def __init__(
        self, provider: str, message: str, *, kind: str, text: str = ""
    ) -> None:
        self.kind = kind  # empty | length | not_json | invalid
        self.text = text
        super().__init__(provider, message, code=kind)

    @property
    def transient(self) -> bool:
        return False


def is_refusal_text(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _REFUSAL_MARKERS)


def status_of(exc: BaseException) -> int | None:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code
    if isinstance(exc, ProviderError):
        return exc.status
    return None


def is_transient(exc: BaseException) -> bool:
    """True for errors worth another try on the same provider."""
    if isinstance(exc, ModerationRefused | BadOutput):
        return False
    if isinstance(exc, ProviderError):
        return exc.transient
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        if _is_quota_exhausted(exc):
            return False
        return exc.status_code >= 500 or exc.status_code in _TRANSIENT_STATUSES
    return isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ClientError)


def _is_quota_exhausted(exc: openai.APIStatusError) -> bool:
    """OpenAI's 429 `insufficient_quota` is a billing state, not a rate limit."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    code = error.get("code") if isinstance(error, dict) else None
    return exc.status_code == 429 and code == "insufficient_quota"


def is_disabling(exc: BaseException) -> bool:
    """Errors that will repeat on every call: bad key, no balance, unknown model."""
    if isinstance(exc, openai.APIStatusError) and _is_quota_exhausted(exc):
        return True
    status = status_of(exc)
    return status in DISABLING_STATUSES


def retry_after_seconds(exc: BaseException, now: float | None = None) -> float | None:
    """The wait a vendor asked for, from Retry-After (seconds or an HTTP date)."""
    if isinstance(exc, ProviderError):
        return exc.retry_after
    if not isinstance(exc, openai.APIStatusError):
        return None
    return parse_retry_after(exc.response.headers, now=now)


def parse_retry_after(
    headers: Mapping[str, Any], now: float | None = None
) -> float | None:
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def describe(exc: BaseException) -> str:
    """A short, secret-free line for logs, the ledger and `LLMUnavailable.reasons`."""
    from infra.logs import redact

    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact(text)[:300]
