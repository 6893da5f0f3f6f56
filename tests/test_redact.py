"""Log lines carry the run id and stage and never a secret, a text or a chat id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from infra import logs
from infra.logs import redact, register_secret, run_context, setup_logging

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"


@pytest.fixture(autouse=True)
def forget_secrets() -> Iterator[None]:
    yield
    logs._KNOWN_SECRETS.clear()


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        pytest.param(
            f"POST https://api.telegram.org/bot{TOKEN}/sendMessage",
            "POST https://api.telegram.org/bot[redacted]/sendMessage",
            id="bot-token-in-url",
        ),
        pytest.param(
            "postgresql://digest:s3cr3t-pw@ep-x-pooler.neon.tech/digest",
            "postgresql://digest:[redacted]@ep-x-pooler.neon.tech/digest",
            id="database-password",
        ),
        pytest.param(
            "https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/2",
            "https://[redacted]@o1.ingest.sentry.io/2",
            id="sentry-dsn-key",
        ),
        pytest.param(
            "Authorization: Bearer abcdefghijklmnop",
            "Authorization: [redacted] [redacted]",
            id="bearer",
        ),
        pytest.param("key sk-abcdef0123456789", "key [redacted]", id="openai-key"),
        pytest.param(
            "chat_id=123456789&text=Beijing%20news&parse_mode=HTML",
            "chat_id=***789&text=[redacted]&parse_mode=HTML",
            id="form-body",
        ),
        pytest.param(
            '{"chat": {"id": -1001234567890, "type": "group"}, "text": "hi \\"you\\""}',
            '{"chat": {"id": ***890, "type": "group"}, "text": "[redacted]"}',
            id="json-update",
        ),
        pytest.param(
            "fetched 12 items from xinhua in 1.2s",
            "fetched 12 items from xinhua in 1.2s",
            id="ordinary-text-untouched",
        ),
    ],
)
def test_redact(raw: str, clean: str) -> None:
    assert redact(raw) == clean


def test_registered_secrets_are_redacted_whatever_their_shape() -> None:
    register_secret("AYNgASQgOTk3ZmQ1")
    register_secret("ab")  # too short to redact safely

    assert redact("upstash token AYNgASQgOTk3ZmQ1 ab") == "upstash token [redacted] ab"


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_every_line_carries_the_run_and_stage_and_no_secret(
    root_logger: logging.Logger,
) -> None:
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    log = logging.getLogger("tests.redact")

    with run_context(run_id="digest-20251114T0000-ab12", stage="deliver"):
        log.info("sending to chat_id=%s", 987654321)
        try:
            raise RuntimeError(f"https://api.telegram.org/bot{TOKEN}/sendMessage: 502")
        except RuntimeError:
            log.exception("send failed")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["stage"] for line in lines] == ["deliver", "deliver"]
    assert {line["run_id"] for line in lines} == {"digest-20251114T0000-ab12"}
    assert lines[0]["msg"] == "sending to chat_id=***321"
    assert TOKEN not in stream.getvalue() and "987654321" not in stream.getvalue()
    assert "bot[redacted]/sendMessage" in lines[1]["exc"]
