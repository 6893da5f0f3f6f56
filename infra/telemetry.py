"""Sentry: errors tagged with run id and stage, cron check-ins, nothing secret.

Without `SENTRY_DSN` every function here is a no-op, and nothing here can
fail a run. Events leave the process only through `scrub_event` and
`scrub_breadcrumb`, which

* redact credentials with `infra.logs.redact` (API keys, bearer tokens,
  the bot token inside every Bot API URL, DSN keys, database passwords)
  plus the exact values of every secret in the settings;
* blank the values of sensitive keys (`token`, `secret`, `authorization`,
  ...) and personal ones (message `text`, `chat`, `from`, names);
* keep chat ids only as their last three digits.

Local variables and request bodies are never collected in the first place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sentry_sdk
from pydantic import SecretStr
from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

from infra.config import Settings
from infra.logs import current_context, mask_chat_id, redact, register_secret

_LOGGER = logging.getLogger(__name__)

FILTERED = "[redacted]"

_SENSITIVE_KEY = re.compile(
    r"(?i)(api[_-]?key|token|secret|passw|authori[sz]ation|cookie|dsn|"
    r"database_url|credential|signature|session)"
)
_PERSONAL_KEYS = frozenset(
    {
        "text",
        "caption",
        "message_text",
        "chat",
        "from",
        "first_name",
        "last_name",
        "username",
        "phone_number",
        "contact",
        "location",
    }
)
_CHAT_ID_KEYS = frozenset({"chat_id", "user_id", "reader_chat_id"})
_TAG_FIELDS = ("run_id", "stage", "job")

_started_with: str | None = None


def init_sentry(settings: Settings, *, release: str | None = None) -> bool:
    """Start Sentry when a DSN is configured; True if events will be sent."""
    for value in settings.model_dump().values():
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())
    if settings.sentry_dsn is None:
        return False
    global _started_with
    dsn = settings.sentry_dsn.get_secret_value()
    if _started_with == dsn and sentry_sdk.get_client().is_active():
        return True

    _started_with = dsn
    sentry_sdk.init(
        dsn=dsn,
        release=release or settings.sentry_release or "china-to-watch@dev",
        environment=settings.sentry_environment,
        before_send=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "denylist", "terms": ["telegram"]}},
            "http_bodies": [],
            "url_query_params": {"mode": "denylist", "terms": ["chat", "text"]},
            "gen_ai": {"inputs": False, "outputs": False},
            "database_query_data": False,
            "stack_frame_variables": False,
        },
        traces_sample_rate=0.0,
    )
    _LOGGER.info(
        "sentry on: environment %s, monitors for %s",
        settings.sentry_environment,
        ",".join(sorted(settings.monitored_jobs)) or "no job",
    )
    return True


def scrub_event(event: Event, hint: Hint) -> Event | None:
    """`before_send`: tag the run, then redact everything that could be secret."""
    if event.get("type") == "check_in":
        return event

    tags = event.setdefault("tags", {})
    for field, value in current_context().items():
        if field in _TAG_FIELDS:
            tags.setdefault(field, value)
    event.pop("user", None)
    scrubbed: Event = _scrub(event)
    return scrubbed


def scrub_breadcrumb(crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb | None:
    """`before_breadcrumb`: HTTP breadcrumbs carry the bot token in their URL."""
    scrubbed: Breadcrumb = _scrub(crumb)
    return scrubbed


def _scrub(value: Any, key: str = "") -> Any:
    lowered = key.lower()
    if lowered in _CHAT_ID_KEYS and isinstance(value, (int, str)):
        return mask_chat_id(value)
    if lowered in _PERSONAL_KEYS or (key and _SENSITIVE_KEY.search(key)):
        return value if value in (None, "", [], {}) else FILTERED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and isinstance(value[0], str) and _is_header(value):
            return [value[0], _scrub(value[1], value[0])]
        return [_scrub(v, key) for v in value]
    return value


def _is_header(pair: Any) -> bool:
    """Sentry sends request headers as `[name, value]` pairs in some payloads."""
    return bool(_SENSITIVE_KEY.search(pair[0])) or pair[0].lower() in _PERSONAL_KEYS


def monitor_config(
    cron: str,
    timezone: str,
    *,
    max_runtime_min: int,
    checkin_margin_min: int = 10,
) -> dict[str, Any]:
    """A Sentry cron monitor's settings, sent with each check-in (upsert)."""
    return {
        "schedule": {"type": "crontab", "value": cron},
        "timezone": timezone,
        "checkin_margin": checkin_margin_min,
        "max_runtime": max_runtime_min,
        "failure_issue_threshold": 1,
        "recovery_threshold": 1,
    }


@contextmanager
def cron_monitor(
    slug: str, config: dict[str, Any] | None, *, enabled: bool = True
) -> Iterator[None]:
    """Check in to Sentry's monitor `slug`: in progress, then ok or error.

    The job's own error is always re-raised; a check-in that cannot be sent
    is only logged.
    """
    if not enabled or not sentry_sdk.get_client().is_active():
        yield
        return
    with sentry_sdk.monitor(monitor_slug=slug, monitor_config=config):  # type: ignore[arg-type]
        yield


def capture_exception(error: BaseException) -> None:
    """Report `error` (tagged with the run context) without raising."""
    if sentry_sdk.get_client().is_active():
        sentry_sdk.capture_exception(error)


def flush(timeout_s: float = 5.0) -> None:
    """Send what is queued: a Modal container may be frozen right after a job."""
    client = sentry_sdk.get_client()
    if client.is_active():
        client.flush(timeout=timeout_s)


def shutdown() -> None:
    """Flush and stop sending (tests; local commands that started Sentry)."""
    global _started_with
    _started_with = None
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=5.0)
    sentry_sdk.get_global_scope().set_client(None)
