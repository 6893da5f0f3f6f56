"""Alerts: what a run report and the stored history raise, and how often it is sent."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from infra import readers
from infra.alerts import (
    Alert,
    console_sender,
    default_sender,
    dispatch_alerts,
    evaluate_alerts,
    telegram_sender,
)
from infra.config import Settings
from infra.store import Store

NOW = datetime(2025, 11, 14, 12, 0, tzinfo=UTC)
BOT_URL = "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"


def save(
    store: Store, run_id: str, kind: str, hours_ago: float, **report: Any
) -> dict[str, Any]:
    """Store a finished run and return its report, as the job wrapper does."""
    status = report.setdefault("status", "ok")
    report.update(run_id=run_id, kind=kind)
    started = NOW - timedelta(hours=hours_ago)
    store.save_run(run_id, kind, status, report, started, started)
    return report


def keys(alerts: list[Alert]) -> list[str]:
    return [a.key for a in alerts]


def test_a_clean_run_raises_nothing(any_store: Store) -> None:
    report = save(
        any_store,
        "c1",
        "collect",
        0,
        sources=[{"name": "xinhua", "status": "ok", "new": 4}],
        items_new=4,
    )

    assert evaluate_alerts(any_store, report, now=NOW) == []


def test_a_failed_run_names_its_stage_and_hides_secrets(any_store: Store) -> None:
    report = save(
        any_store,
        "d1",
        "digest",
        0,
        status="failed",
        stages={"rank": {"status": "ok"}, "deliver": {"status": "failed"}},
        error=f"ConnectError for {BOT_URL}/sendMessage",
    )

    [alert] = evaluate_alerts(any_store, report, now=NOW)

    assert alert.key == "run-failed:digest" and alert.severity == "critical"
    assert "d1 failed in stage deliver" in alert.text
    assert "AAHdqTcv" not in alert.text and "/bot[redacted]/" in alert.text


def test_the_run_after_a_failure_reports_recovery(any_store: Store) -> None:
    save(any_store, "d1", "digest", 1, status="failed", error="boom")
    report = save(any_store, "d2", "digest", 0, readers_due=0)

    assert keys(evaluate_alerts(any_store, report, now=NOW)) == ["run-recovered:digest"]


def test_fallbacks_make_a_degraded_alert_each(any_store: Store) -> None:
    report = save(
        any_store,
        "c1",
        "collect",
        0,
        status="degraded",
        fallbacks=[
            {"kind": "provider", "detail": "deepseek -> qwen (503)"},
            {"kind": "vector_index", "detail": "upstash timeout; local index"},
        ],
    )

    alerts = evaluate_alerts(any_store, report, now=NOW)

    assert keys(alerts) == ["degraded:llm-fallback", "degraded:vector-index"]
    assert "deepseek -> qwen (503)" in alerts[0].text


@pytest.mark.parametrize(
    ("earlier_failures", "alerted"),
    [
        pytest.param(1, False, id="two-in-a-row"),
        pytest.param(2, True, id="three-in-a-row"),
    ],
)
def test_a_source_failing_three_runs_in_a_row_is_reported(
    any_store: Store, earlier_failures: int, alerted: bool
) -> None:
    failing = {"name": "caixin", "status": "failed", "error": "HTTP 503"}
    save(any_store, "c0", "collect", 10, sources=[{"name": "caixin", "status": "ok"}])
    for n in range(earlier_failures):
        save(any_store, f"c{n + 1}", "collect", 9 - n, sources=[failing])
    report = save(any_store, "now", "collect", 0, sources=[failing])

    alerts = evaluate_alerts(any_store, report, now=NOW)

    assert ("source-failing:caixin" in keys(alerts)) is alerted


def test_the_stored_failure_count_counts_without_history(any_store: Store) -> None:
    any_store.save_source_state("rfi-zh", consecutive_failures=5)
    report = save(
        any_store, "c1", "collect", 0, sources=[{"name": "rfi-zh", "status": "blocked"}]
    )

    [alert] = evaluate_alerts(any_store, report, now=NOW)

    assert alert.key == "source-failing:rfi-zh" and "5 runs in a row" in alert.text


def test_a_stale_source_is_reported(any_store: Store) -> None:
    report = save(
        any_store, "c1", "collect", 0, sources=[{"name": "people", "status": "stale"}]
    )

    assert keys(evaluate_alerts(any_store, report, now=NOW)) == ["source-stale:people"]


def test_due_readers_without_a_digest_is_silence(any_store: Store) -> None:
    report = save(any_store, "d1", "digest", 0, readers_due=3, digests=0)

    [alert] = evaluate_alerts(any_store, report, now=NOW)

    assert alert.key == "silence:no-digest" and "3 readers due" in alert.text


@pytest.mark.parametrize(
    ("broken_before", "alerted"),
    [pytest.param(0, False, id="once"), pytest.param(1, True, id="twice")],
)
def test_summaries_failing_run_after_run_is_silence(
    any_store: Store, broken_before: int, alerted: bool
) -> None:
    broken = {"stages": {"summarize": {"status": "failed"}}, "digests": 4}
    save(any_store, "d0", "digest", 5, digests=4, summaries={"llm": 8})
    for n in range(broken_before):
        save(any_store, f"d{n + 1}", "digest", 4 - n, **broken)
    report = save(
        any_store,
        "now",
        "digest",
        0,
        digests=4,
        summaries={"llm": 0, "fallback": 8},
    )

    alerts = evaluate_alerts(any_store, report, now=NOW)

    assert ("silence:summaries" in keys(alerts)) is alerted


@pytest.mark.parametrize("with_readers", [True, False], ids=["readers", "no-readers"])
def test_a_day_without_any_digest_is_silence(
    any_store: Store, with_readers: bool
) -> None:
    if with_readers:
        readers.save_reader(any_store, readers.Reader(id="", chat_id="1001"))
    save(any_store, "d1", "digest", 30, digests=5)
    save(any_store, "d2", "digest", 20, digests=0, readers_due=0)
    report = save(any_store, "c1", "collect", 0, items_new=7)

    alerts = evaluate_alerts(any_store, report, now=NOW)

    assert ("silence:no-digest" in keys(alerts)) is with_readers
    if with_readers:
        assert "no digest produced for 30 hours" in alerts[0].text


@pytest.mark.parametrize(
    ("spent", "expected"),
    [
        pytest.param(10.0, [], id="under"),
        pytest.param(31.0, ["budget-soft:2025-11"], id="soft"),
        pytest.param(50.0, ["budget-hard:2025-11"], id="hard"),
    ],
)
def test_budget_lines(any_store: Store, spent: float, expected: list[str]) -> None:
    report = save(
        any_store,
        "d1",
        "digest",
        0,
        digests=2,
        budget={"month_to_date_usd": spent, "budget_usd": 50.0, "soft_ratio": 0.6},
    )

    assert keys(evaluate_alerts(any_store, report, now=NOW)) == expected


def test_an_outage_sends_one_message_per_window(any_store: Store) -> None:
    sent: list[str] = []
    alert = Alert("run-failed:digest", "critical", "digest run failed")

    counts = [
        dispatch_alerts(any_store, [alert], sent.append, now=NOW + timedelta(hours=h))
        for h in (0, 1, 2, 5.9, 6.1)
    ]

    assert counts == [1, 0, 0, 0, 1]
    assert sent == ["🔴 digest run failed"] * 2


def test_keys_are_limited_independently(any_store: Store) -> None:
    sent: list[str] = []
    alerts = [
        Alert("source-failing:a", "warning", "a"),
        Alert("source-failing:b", "warning", "b"),
    ]

    first = dispatch_alerts(any_store, alerts, sent.append, now=NOW)
    second = dispatch_alerts(any_store, alerts, sent.append, now=NOW)

    assert (first, second) == (2, 0)


def test_an_alert_that_could_not_be_sent_is_tried_again(any_store: Store) -> None:
    alert = Alert("run-failed:collect", "critical", "collect failed")

    def broken(text: str) -> None:
        raise ConnectionError("telegram down")

    sent: list[str] = []
    assert dispatch_alerts(any_store, [alert], broken, now=NOW) == 0
    assert dispatch_alerts(any_store, [alert], sent.append, now=NOW) == 1


def test_concurrent_dispatchers_send_once(any_store: Store) -> None:
    sent: list[str] = []
    barrier = threading.Barrier(4)
    alert = Alert("silence:no-digest", "critical", "no digest")

    def dispatch(_: int) -> int:
        store = Store(any_store.url)
        try:
            barrier.wait()
            return dispatch_alerts(store, [alert], sent.append)
        finally:
            store.close()

    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(dispatch, range(4)))

    assert sorted(counts) == [0, 0, 0, 1] and len(sent) == 1


def test_the_console_sender_prints_the_alert() -> None:
    out = io.StringIO()

    console_sender(out)("🟠 source x is stale")

    assert out.getvalue() == "ALERT 🟠 source x is stale\n"


class FakeBotApi:
    """The two Bot API methods an alert needs, on 127.0.0.1; chat 222 blocked us."""

    def __init__(self, token: str) -> None:
        self.sent: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if "json" in self.headers.get("Content-Type", ""):
                    params = json.loads(body or b"{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                method = self.path.rsplit("/", 1)[-1]
                status, answer = fake.answer(self.path, method, params)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.token = token
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(
        self, path: str, method: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if not path.startswith(f"/bot{self.token}/"):
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        if method == "getMe":
            me = {"id": 1, "is_bot": True, "first_name": "Watch", "username": "ctw_bot"}
            return 200, {"ok": True, "result": me}
        if str(params.get("chat_id")) == "222":
            blocked = "Forbidden: bot was blocked by the user"
            return 403, {"ok": False, "error_code": 403, "description": blocked}
        self.sent.append(params)
        chat = {"id": int(params["chat_id"]), "type": "private"}
        message = {"message_id": len(self.sent), "date": 0, "chat": chat}
        return 200, {"ok": True, "result": {**message, "text": params["text"]}}


@pytest.fixture
def bot_api() -> Iterator[FakeBotApi]:
    fake = FakeBotApi("123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1")
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def bot_settings(api: FakeBotApi, admins: str) -> Settings:
    return Settings.model_validate(
        {
            "TELEGRAM_BOT_TOKEN": api.token,
            "TELEGRAM_API_BASE_URL": api.url,
            "TELEGRAM_ADMIN_CHAT_IDS": admins,
        }
    )


def test_alerts_reach_every_admin_chat_as_plain_text(bot_api: FakeBotApi) -> None:
    send = default_sender(bot_settings(bot_api, "111,333"))

    send("🔴 digest run <b>x</b> failed")

    assert [m["chat_id"] for m in bot_api.sent] == ["111", "333"]
    assert all(m["text"] == "🔴 digest run <b>x</b> failed" for m in bot_api.sent)
    assert all("parse_mode" not in m for m in bot_api.sent)


def test_one_blocked_admin_does_not_fail_the_alert(bot_api: FakeBotApi) -> None:
    send = telegram_sender(bot_settings(bot_api, "222,111"))

    send("🟠 source x is stale")

    assert [m["chat_id"] for m in bot_api.sent] == ["111"]


def test_an_alert_no_admin_received_is_an_error(bot_api: FakeBotApi) -> None:
    send = telegram_sender(bot_settings(bot_api, "222"))

    with pytest.raises(ConnectionError):
        send("🔴 nobody hears this")


def test_without_admin_chats_alerts_go_to_the_console(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings.model_validate({"TELEGRAM_BOT_TOKEN": "123:abc"})

    default_sender(settings)("🟢 collect runs work again")

    assert capsys.readouterr().err == "ALERT 🟢 collect runs work again\n"
