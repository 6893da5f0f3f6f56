"""The LLM layer's contract: its errors and its result.

This is the part the editorial stages code against; the chain itself
(providers, retries, ledger, budget) is the LLM layer's own.

    LLMError
    ├── LLMUnavailable    no provider could answer (`reasons` per provider)
    └── ModerationRefused a provider refused the input on content grounds
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class LLMError(Exception):
    """Base of every error the LLM layer raises."""


class LLMUnavailable(LLMError):
    """No configured provider could produce a valid answer."""

    def __init__(self, message: str, reasons: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reasons: dict[str, str] = dict(reasons or {})


class ModerationRefused(LLMError):
    """A provider refused the input on content grounds; not an outage."""

    def __init__(self, message: str, provider: str) -> None:
        super().__init__(message)
        self.provider = provider


@dataclass
class LLMResult(Generic[T]):
    value: T
    provider: str
    model: str
    cached: bool
    prompt_version: str
    cost_usd: float
