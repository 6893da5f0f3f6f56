"""The LLM layer's contract: its errors and its result.

This is the part the editorial stages code against; the chain itself
(providers, retries, ledger, budget) is the LLM layer's own.

    LLMError
    ├── LLMUnavailable    no provider could answer (`reasons` per provider)
    └── ModerationRefused a provider refused the input on content grounds
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class LLMError(Exception):
    """Base of every error the LLM layer raises."""


class LLMUnavailable(LLMError):
    """No provider produced an answer; `reasons` says why, per provider."""

    def __init__(
        self, reasons: Mapping[str, str], *, refused_by: list[str] | None = None
    ) -> None:
        self.reasons = dict(reasons)
        self.refused_by = list(refused_by or [])
        detail = "; ".join(f"{k}: {v}" for k, v in self.reasons.items()) or "no reason"
        super().__init__(f"no LLM answer ({detail})")


class ModerationRefused(LLMError):
    """A vendor's content filter declined this input; another vendor may not."""

    def __init__(self, provider: str, message: str = "") -> None:
        self.provider = provider
        self.message = message
        super().__init__(f"{provider} refused the content: {message}".rstrip(": "))


@dataclass
class LLMResult(Generic[T]):
    value: T
    provider: str
    model: str
    cached: bool
    prompt_version: str
    cost_usd: float
