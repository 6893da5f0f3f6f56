"""Alerts to the admin chat: failures, degraded runs, silence and the budget.

`evaluate_alerts(store, report)` looks at one finished run's report and
the stored history of earlier runs and returns what an operator should
hear about; `dispatch_alerts(store, alerts, send)` sends each through
`send(text)` (Telegram in production, the console locally) at most once
per alert key and window, so an outage makes one message, not hundreds.

Rules, by key:

* `run-failed:<kind>`: the run failed; `run-recovered:<kind>` when the next
  one succeeds.
* `degraded:llm-fallback`, `degraded:vector-index`: a provider or the
  Upstash index failed and the run went on with a fallback.
* `source-failing:<name>`: a source failed three runs in a row;
  `source-stale:<name>`: it answers but its newest item is too old.
* `silence:no-digest`: readers were due and no digest was produced, or no
  digest at all for a day while readers exist;
  `silence:summaries`: summarization failed run after run (older digests
  still look fine, so nothing else would show it).
* `budget-soft:<month>`, `budget-hard:<month>`: month-to-date LLM spend
  crossed the soft line (degraded mode) or the hard line (no LLM calls).

Texts are plain text, redacted, and never carry chat ids or message texts.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from infra import lease, runreport
from infra.config import Settings
from infra.logs import mask_chat_id, redact
from infra.readers import list_readers
from infra.store import Store, utcnow

_LOGGER = logging.getLogger(__name__)

SOURCE_FAILURES_IN_A_ROW = 3
SUMMARY_FAILURES_IN_A_ROW = 2
NO_DIGEST_AFTER = timedelta(hours=26)
DEFAULT_WINDOW = timedelta(hours=6)
BUDGET_WINDOW = timedelta(days=7)
DEFAULT_SOFT_RATIO = 0.6
_HISTORY = 50

_ICONS = {"critical": "🔴", "warning": "🟠", "info": "🟢"}


@dataclass(frozen=True)
class Alert:
    """One thing to tell the operator; `key` is what rate limiting counts."""

    key: str
    severity: str  # critical | warning | info
    text: str
    window: timedelta | None = None

    def render(self) -> str:
        return f"{_ICONS.get(self.severity, '•')} {self.text}"


def evaluate_alerts(
    store: Store, report: dict[str, Any], *, now: datetime | None = None
) -> list[Alert]:
    """Alerts raised by `report` (one finished run) given the stored history."""
    now = now or utcnow()
    kind = str(report.get("kind", "run"))
    history = [
        run
        for run in store.recent_runs(limit=_HISTORY)
        if run["id"] != report.get("run_id")
    ]
    same_kind = [r["report"] or {} for r in history if r["kind"] == kind]

    alerts = [
        *_failed_or_recovered(report, kind, same_kind),
        *_fallbacks(report),
        *_sources(store, report, same_kind),
        *_silence(store, report, kind, history, same_kind, now),
        *_budget(report, now),
    ]
    _LOGGER.info(
        "run %s (%s, %s): %d alerts",
        report.get("run_id"),
        kind,
        report.get("status"),
        len(alerts),
    )
    return alerts


def _failed_or_recovered(
    report: dict[str, Any], kind: str, earlier: list[dict[str, Any]]
) -> list[Alert]:
    run_id = report.get("run_id", "?")
    if report.get("status") == "failed":
        where = runreport.failed_stage(report)
        error = redact(str(report.get("error") or "no error recorded"))[:300]
        stage = f" in stage {where}" if where else ""
        text = f"{kind} run {run_id} failed{stage}: {error}"
        return [Alert(f"run-failed:{kind}", "critical", text)]
    if earlier and earlier[0].get("status") == "failed":
        text = f"{kind} runs work again: {run_id} finished {report.get('status')}."
        return [Alert(f"run-recovered:{kind}", "info", text)]
    return []


def _fallbacks(report: dict[str, Any]) -> list[Alert]:
    alerts = []
    for kind, key, what in (
        ("provider", "degraded:llm-fallback", "LLM provider fallback"),
        ("vector_index", "degraded:vector-index", "vector index fallback"),
    ):
        used = runreport.fallbacks(report, kind)
        if used:
            details = "; ".join(redact(str(f.get("detail", "?"))) for f in used[:5])
            text = f"degraded run {report.get('run_id')}: {what} ({details})"
            alerts.append(Alert(key, "warning", text))
    return alerts


def _sources(
    store: Store, report: dict[str, Any], earlier: list[dict[str, Any]]
) -> list[Alert]:
    alerts = []
    for source in runreport.sources(report):
        name = str(source.get("name"))
        status = source.get("status")
        if status == "stale":
            text = f"source {name} is stale: it answers, but nothing new arrives."
            alerts.append(Alert(f"source-stale:{name}", "warning", text))
        if status not in runreport.FAILED_SOURCE_STATUSES:
            continue
        in_a_row = 1 + _leading([name in runreport.failed_sources(r) for r in earlier])
        stored = int(store.get_source_state(name).get("consecutive_failures") or 0)
        in_a_row = max(in_a_row, stored)
        if in_a_row >= SOURCE_FAILURES_IN_A_ROW:
            error = redact(str(source.get("error") or status))[:200]
            text = f"source {name} failed {in_a_row} runs in a row: {error}"
            alerts.append(Alert(f"source-failing:{name}", "warning", text))
    return alerts


def _silence(
    store: Store,
    report: dict[str, Any],
    kind: str,
    history: list[dict[str, Any]],
    same_kind: list[dict[str, Any]],
    now: datetime,
) -> list[Alert]:
    alerts = []
    due = int(runreport.number(report, "readers_due"))
    if kind == "digest" and report.get("status") != "failed":
        if due and not runreport.number(report, "digests"):
            text = f"digest run {report.get('run_id')}: {due} readers due, no digest."
            alerts.append(Alert("silence:no-digest", "critical", text))

        if _summaries_broken(report):
            in_a_row = 1 + _leading([_summaries_broken(r) for r in same_kind])
            if in_a_row >= SUMMARY_FAILURES_IN_A_ROW:
                text = (
                    f"summaries failed {in_a_row} digest runs in a row; readers "
                    "get extractive fallbacks."
                )
                alerts.append(Alert("silence:summaries", "critical", text))

    if not any(a.key == "silence:no-digest" for a in alerts):
        quiet_since = _last_digest_at(report, history)
        if quiet_since and now - quiet_since > NO_DIGEST_AFTER:
            if list_readers(store, active_only=True):
                hours = int((now - quiet_since).total_seconds() // 3600)
                text = f"no digest produced for {hours} hours while readers wait."
                alerts.append(Alert("silence:no-digest", "critical", text))
    return alerts


def _summaries_broken(report: dict[str, Any]) -> bool:
    if runreport.stage(report, "summarize").get("status") == "failed":
        return True
    if runreport.fallbacks(report, "summary"):
        return True
    fell_back = runreport.number(report, "summaries", "fallback")
    return bool(fell_back) and not runreport.number(report, "summaries", "llm")


def _last_digest_at(
    report: dict[str, Any], history: list[dict[str, Any]]
) -> datetime | None:
    """When a digest was last produced; the oldest run if never (None if no runs)."""
    if runreport.number(report, "digests"):
        return None
    produced = [r["started_at"] for r in history if _digests(r)]
    if produced:
        return max(produced)
    return min((r["started_at"] for r in history), default=None)


def _digests(run: dict[str, Any]) -> float:
    return runreport.number(run.get("report") or {}, "digests")


def _budget(report: dict[str, Any], now: datetime) -> list[Alert]:
    spent = runreport.number(report, "budget", "month_to_date_usd")
    budget = runreport.number(report, "budget", "budget_usd")
    if not budget:
        return []
    soft = runreport.number(report, "budget", "soft_ratio") or DEFAULT_SOFT_RATIO
    month = now.strftime("%Y-%m")
    share = f"${spent:.2f} of ${budget:.2f} ({spent / budget:.0%})"
    if spent >= budget:
        text = (
            f"budget hard line reached: {share} this month; no LLM calls until reset."
        )
        return [Alert(f"budget-hard:{month}", "critical", text, BUDGET_WINDOW)]
    if spent >= soft * budget:
        text = f"budget soft line passed: {share} this month; digest runs degraded."
        return [Alert(f"budget-soft:{month}", "warning", text, BUDGET_WINDOW)]
    return []


def _leading(flags: list[bool]) -> int:
    """How many of the newest runs in a row had the condition."""
    count = 0
    for flag in flags:
        if not flag:
            break
        count += 1
    return count


def dispatch_alerts(
    store: Store,
    alerts: list[Alert],
    send: Callable[[str], object],
    *,
    window: timedelta = DEFAULT_WINDOW,
    now: datetime | None = None,
) -> int:
    """Send each alert unless its key was sent within its window; returns how many."""
    sent = 0
    for alert in alerts:
        claim = f"alert:{alert.key}"
        holder = uuid.uuid4().hex
        ttl_s = (alert.window or window).total_seconds()
        if not lease.acquire(store, claim, ttl_s, holder, now=now):
            _LOGGER.info("alert %s suppressed: already sent in its window", alert.key)
            continue
        try:
            send(alert.render())
        except Exception:
            # The next run tries again rather than losing the alert.
            lease.release(store, claim, holder)
            _LOGGER.warning("alert %s could not be sent", alert.key, exc_info=True)
            continue
        sent += 1
    if alerts:
        _LOGGER.info("alerts: %d raised, %d sent", len(alerts), sent)
    return sent


def console_sender(stream: IO[str] | None = None) -> Callable[[str], None]:
    """A `send` for local runs: alerts go to stderr."""

    def send(text: str) -> None:
        print(f"ALERT {text}", file=stream or sys.stderr, flush=True)

    return send


def telegram_sender(settings: Settings) -> Callable[[str], None]:
    """A `send` for production: each alert to every admin chat, as plain text.

    Raises only when no admin chat got the message, so one blocked admin
    does not make the others receive it again on the next run.
    """
    from telegram import Bot, LinkPreviewOptions

    if settings.telegram_bot_token is None or not settings.admin_chat_ids:
        raise ValueError("set TELEGRAM_BOT_TOKEN and TELEGRAM_ADMIN_CHAT_IDS")
    token = settings.telegram_bot_token.get_secret_value()
    base_url = settings.telegram_api_base_url.rstrip("/") + "/bot"
    chats = settings.admin_chat_ids

    async def deliver(text: str) -> int:
        delivered = 0
        async with Bot(token, base_url=base_url) as bot:
            for chat in chats:
                try:
                    await bot.send_message(
                        chat,
                        text[:4000],
                        link_preview_options=LinkPreviewOptions(is_disabled=True),
                    )
                    delivered += 1
                except Exception:
                    _LOGGER.warning(
                        "alert not delivered to admin %s",
                        mask_chat_id(chat),
                        exc_info=True,
                    )
        return delivered

    def send(text: str) -> None:
        if not asyncio.run(deliver(text)):
            raise ConnectionError("no admin chat received the alert")

    return send


def default_sender(settings: Settings) -> Callable[[str], None]:
    """Telegram when a bot token and admin chats are configured, else the console."""
    if settings.telegram_bot_token is not None and settings.admin_chat_ids:
        return telegram_sender(settings)
    return console_sender()
