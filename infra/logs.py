"""JSON logs with the run id and stage on every line, and secrets kept out.

`run_context(run_id=..., stage=...)` sets the fields for everything logged
inside it, including from asyncio tasks started inside it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

_CONTEXT: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "digest_log_context", default=()
)

# Bot API URLs carry the token in the path; API keys and bearer tokens look alike.
_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}"), "[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1[redacted]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}\b"), "[redacted]"),
    (
        re.compile(
            r"(?i)((?:api[_-]?key|token|secret|password|authorization|dsn)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]{4,}"
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"(?i)([?&]key=)[^&\s\"']+"), r"\1[redacted]"),
    # URL credentials: a password after the user name, or a bare key (Sentry DSN).
    (re.compile(r"(://[^:/\s@]+:)[^@/\s]+(@)"), r"\1[redacted]\2"),
    (re.compile(r"(://)[^:/\s@\[\]]+(@)"), r"\1[redacted]\2"),
    # Message texts sent to readers, as form fields or JSON.
    (re.compile(r"(?i)\b((?:text|caption)=)[^&\s]+"), r"\1[redacted]"),
    (
        re.compile(r'(?i)("(?:text|caption)"\s*:\s*")(?:[^"\\]|\\.)*(")'),
        r"\1[redacted]\2",
    ),
]

# Chat ids are personal: keep only the last three digits, enough to tell apart.
_CHAT_ID_PATTERNS = [
    re.compile(r"(?i)(chat[_-]?id[\"']?\s*[:=]\s*[\"']?)(-?\d{4,})"),
    re.compile(r'("chat"\s*:\s*\{[^{}]*?"id"\s*:\s*)(-?\d{4,})'),
]

_KNOWN_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Redact this exact value wherever it appears, whatever its shape."""
    if value and len(value) >= 6:
        _KNOWN_SECRETS.add(value)


def mask_chat_id(chat_id: str | int) -> str:
    """`123456789` -> `***789`: enough to tell readers apart, not to reach one."""
    return "***" + str(chat_id)[-3:]


def redact(text: str) -> str:
    """Replace credentials, message texts and full chat ids in `text`."""
    for secret in sorted(_KNOWN_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    for pattern in _CHAT_ID_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + mask_chat_id(m.group(2)), text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        entry.update(dict(_CONTEXT.get()))
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update({k: v for k, v in extra.items() if k not in entry})
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs full URLs at INFO, and a Bot API URL contains the token.
    for noisy in ("httpx", "httpcore", "telegram", "openai", "dashscope", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def run_context(**fields: str) -> Iterator[None]:
    token = _CONTEXT.set(tuple({**dict(_CONTEXT.get()), **fields}.items()))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> dict[str, str]:
    return dict(_CONTEXT.get())
