"""Sentry through the real sentry-sdk, against a fake ingest on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from infra import telemetry
from infra.config import Settings
from infra.logs import run_context
from tests.fake_sentry import FakeSentry

BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
DEEPSEEK_KEY = "sk-live-0123456789abcdef"
UPSTASH_TOKEN = "AYNgASQgOTk3ZmQ1ZTEtZTk3Yi00MzQ5"
DB_PASSWORD = "pg-pass-8f1e2d"
CHAT_ID = "987654321"
MESSAGE_TEXT = "Your digest: Beijing unveils stimulus"


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    fake = FakeSentry().start()
    yield fake
    telemetry.shutdown()
    fake.stop()


@pytest.fixture
def telegram() -> Iterator[str]:
    """A Bot API look-alike that fails every call, as Telegram does on bad input."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": false, "description": "Bad Request"}')

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def make_settings(dsn: str, **extra: str) -> Settings:
    return Settings.model_validate(
        {
            "SENTRY_DSN": dsn,
            "SENTRY_ENVIRONMENT": "test",
            "SENTRY_RELEASE": "china-to-watch@abc123",
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
            "UPSTASH_VECTOR_REST_TOKEN": UPSTASH_TOKEN,
            "DATABASE_URL": f"postgresql://ctw:{DB_PASSWORD}@db.internal:5432/ctw",
            **extra,
        }
    )


def test_an_error_reaches_sentry_tagged_and_scrubbed(
    sentry: FakeSentry, telegram: str
) -> None:
    assert telemetry.init_sentry(make_settings(sentry.dsn))
    url = f"{telegram}/bot{BOT_TOKEN}/sendMessage"

    with run_context(run_id="run-42", stage="deliver"):
        response = httpx.get(url, params={"chat_id": CHAT_ID, "text": MESSAGE_TEXT})
        try:
            raise RuntimeError(
                f"send failed: {response.request.url} chat_id={CHAT_ID} "
                f"key={DEEPSEEK_KEY} upstash {UPSTASH_TOKEN} "
                f"db postgresql://ctw:{DB_PASSWORD}@db.internal/ctw"
            )
        except RuntimeError as error:
            telemetry.capture_exception(error)
    telemetry.flush()

    [event] = sentry.items("event")
    assert event["tags"]["run_id"] == "run-42"
    assert event["tags"]["stage"] == "deliver"
    assert event["environment"] == "test"
    assert event["release"] == "china-to-watch@abc123"

    message = event["exception"]["values"][0]["value"]
    assert "/bot[redacted]/sendMessage" in message
    assert "chat_id=***321" in message
    assert "postgresql://ctw:[redacted]@db.internal/ctw" in message

    [crumb] = [b for b in event["breadcrumbs"]["values"] if b["category"] == "httplib"]
    assert crumb["data"]["url"].endswith("/bot[redacted]/sendMessage")

    raw = sentry.raw().decode()
    for secret in (BOT_TOKEN, DEEPSEEK_KEY, UPSTASH_TOKEN, DB_PASSWORD, CHAT_ID):
        assert secret not in raw
    assert "Beijing unveils stimulus" not in raw
    assert "stimulus" not in raw


def test_logged_errors_and_their_arguments_are_scrubbed(
    sentry: FakeSentry, caplog: pytest.LogCaptureFixture
) -> None:
    telemetry.init_sentry(make_settings(sentry.dsn))
    caplog.set_level(logging.INFO)
    log = logging.getLogger("tests.telemetry")

    with run_context(run_id="run-7", stage="summarize"):
        log.info("calling with token %s", UPSTASH_TOKEN)
        log.error("provider refused: %s", {"api_key": DEEPSEEK_KEY, "text": "hi"})
    telemetry.flush()

    [event] = sentry.items("event")
    assert event["tags"] == {"run_id": "run-7", "stage": "summarize"}
    raw = sentry.raw().decode()
    assert DEEPSEEK_KEY not in raw and UPSTASH_TOKEN not in raw
    crumbs = event["breadcrumbs"]["values"]
    [crumb] = [c for c in crumbs if c["category"] == "tests.telemetry"]
    assert crumb["message"] == "calling with token [redacted]"
    assert event["logentry"]["params"] == {
        "api_key": "[redacted]",
        "text": "[redacted]",
    }


def test_request_headers_and_telegram_payloads_are_blanked() -> None:
    event = {
        "request": {
            "url": f"https://example.modal.run/telegram/bot{BOT_TOKEN}",
            "headers": {
                "X-Telegram-Bot-Api-Secret-Token": "webhook-secret-value",
                "Content-Type": "application/json",
            },
        },
        "extra": {
            "update": {
                "update_id": 10,
                "message": {
                    "chat": {"id": int(CHAT_ID), "type": "private"},
                    "from": {"id": int(CHAT_ID), "first_name": "Li"},
                    "text": MESSAGE_TEXT,
                },
            },
            "chat_id": int(CHAT_ID),
        },
        "user": {"ip_address": "203.0.113.9"},
    }

    scrubbed = telemetry.scrub_event(event, {})

    assert "user" not in scrubbed
    headers = scrubbed["request"]["headers"]
    assert headers["X-Telegram-Bot-Api-Secret-Token"] == telemetry.FILTERED
    assert headers["Content-Type"] == "application/json"
    message = scrubbed["extra"]["update"]["message"]
    assert message == {"chat": "[redacted]", "from": "[redacted]", "text": "[redacted]"}
    assert scrubbed["extra"]["chat_id"] == "***321"
    assert scrubbed["extra"]["update"]["update_id"] == 10
    assert BOT_TOKEN not in json.dumps(scrubbed)


def test_a_monitored_job_checks_in_and_reports_its_failure(sentry: FakeSentry) -> None:
    telemetry.init_sentry(make_settings(sentry.dsn))
    config = telemetry.monitor_config("0 * * * *", "UTC", max_runtime_min=50)

    with telemetry.cron_monitor("digest-hourly", config):
        pass
    with pytest.raises(ValueError, match="boom"):
        with telemetry.cron_monitor("digest-hourly", config):
            raise ValueError("boom")
    telemetry.flush()

    checkins = sentry.items("check_in")
    assert [c["status"] for c in checkins] == [
        "in_progress",
        "ok",
        "in_progress",
        "error",
    ]
    assert {c["monitor_slug"] for c in checkins} == {"digest-hourly"}
    assert checkins[0]["monitor_config"]["schedule"] == {
        "type": "crontab",
        "value": "0 * * * *",
    }
    assert checkins[0]["monitor_config"]["timezone"] == "UTC"
    assert checkins[1]["check_in_id"] == checkins[0]["check_in_id"]
    assert checkins[1]["environment"] == "test"


def test_a_job_without_a_monitor_sends_no_check_in(sentry: FakeSentry) -> None:
    telemetry.init_sentry(make_settings(sentry.dsn))

    with telemetry.cron_monitor("collect", None, enabled=False):
        pass
    telemetry.flush()

    assert sentry.items("check_in") == []


def test_without_a_dsn_nothing_starts(sentry: FakeSentry) -> None:
    settings = Settings.model_validate({"TELEGRAM_BOT_TOKEN": BOT_TOKEN})

    assert not telemetry.init_sentry(settings)
    with telemetry.cron_monitor("digest-hourly", None):
        telemetry.capture_exception(RuntimeError("not sent"))
    telemetry.flush()

    assert sentry.envelopes == []
