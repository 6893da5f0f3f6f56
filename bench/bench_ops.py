"""Operations under load: lease races, an alert storm, the cost of scrubbing.

    python bench/bench_ops.py                      # SQLite
    TEST_DATABASE_URL=postgresql://... python bench/bench_ops.py   # and PostgreSQL

Prints counts and ratios measured side by side; asserts nothing.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from infra import lease, telemetry  # noqa: E402
from infra.alerts import dispatch_alerts, evaluate_alerts  # noqa: E402
from infra.config import Settings  # noqa: E402
from infra.store import Store  # noqa: E402

ROUNDS, RACERS = 200, 4


def lease_race(url: str, label: str) -> None:
    """RACERS threads, each with its own engine, race for ROUNDS fresh leases."""
    stores = [Store(url) for _ in range(RACERS)]
    names = [f"race-{uuid.uuid4().hex[:8]}" for _ in range(ROUNDS)]
    barrier = threading.Barrier(RACERS)
    wins = [[False] * ROUNDS for _ in range(RACERS)]

    def racer(n: int) -> float:
        spent = 0.0
        for i, name in enumerate(names):
            barrier.wait()
            start = time.perf_counter()
            wins[n][i] = lease.acquire(stores[n], name, 60, f"racer-{n}")
            spent += time.perf_counter() - start
        return spent

    with ThreadPoolExecutor(RACERS) as pool:
        spent = sum(pool.map(racer, range(RACERS)))
    winners = [sum(w[i] for w in wins) for i in range(ROUNDS)]
    wrong = sum(1 for count in winners if count != 1)
    per_call_ms = 1000 * spent / (ROUNDS * RACERS)
    print(
        f"lease race {label}: {ROUNDS} rounds x {RACERS} threads, "
        f"rounds without exactly one winner: {wrong}, "
        f"{per_call_ms:.2f} ms per contended acquire"
    )
    for store in stores:
        store.close()


def alert_storm(url: str, label: str) -> None:
    """500 failed runs in a row, one per minute: how many messages reach the admin?"""
    store = Store(url)
    sent: list[str] = []
    raised = 0
    t0 = datetime(2025, 11, 14, tzinfo=UTC)
    for n in range(500):
        now = t0 + timedelta(minutes=n)
        report = {
            "run_id": f"r{n}",
            "kind": "digest",
            "status": "failed",
            "error": "ConnectError: database unreachable",
        }
        store.save_run(report["run_id"], "digest", "failed", report, now, now)
        alerts = evaluate_alerts(store, report, now=now)
        raised += len(alerts)
        dispatch_alerts(store, alerts, sent.append, now=now)
    print(
        f"alert storm {label}: 500 failed runs over 8.3 h raised {raised} alerts, "
        f"sent {len(sent)} messages ({len(sent) / raised:.3f} per alert; "
        "6 h window)"
    )
    store.close()


def scrub_cost() -> None:
    """Scrubbing one realistic error event, against serializing it once."""
    token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
    telemetry.init_sentry(Settings.model_validate({"TELEGRAM_BOT_TOKEN": token}))
    frames = [
        {
            "filename": f"functions/stage{i}.py",
            "function": "run",
            "lineno": 10 + i,
            "context_line": f"    response = await client.post(url_{i}, json=payload)",
        }
        for i in range(25)
    ]
    event = {
        "exception": {
            "values": [
                {
                    "type": "HTTPStatusError",
                    "value": f"502 for https://api.telegram.org/bot{token}/sendMessage",
                    "stacktrace": {"frames": frames},
                }
            ]
        },
        "breadcrumbs": {
            "values": [
                {"category": "httplib", "data": {"url": f"https://x/bot{token}/m{i}"}}
                for i in range(100)
            ]
        },
        "extra": {"chat_id": 987654321, "text": "digest body " * 50},
    }
    rounds = 300
    start = time.perf_counter()
    for _ in range(rounds):
        telemetry.scrub_event(json.loads(json.dumps(event)), {})
    scrub = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(rounds):
        json.loads(json.dumps(event))
    copy = time.perf_counter() - start
    print(
        f"scrub: {1000 * (scrub - copy) / rounds:.2f} ms per event "
        f"(25 frames, 100 breadcrumbs), {scrub / copy:.1f}x a JSON round trip"
    )


def _pg_schema(base: str) -> tuple[str, object]:
    url = Settings.model_validate({"DATABASE_URL": base}).store_url
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    return f"{url}?options=-csearch_path%3D{schema}", (admin, schema)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:///{tmp}/bench.db"
        lease_race(sqlite, "sqlite")
        alert_storm(sqlite, "sqlite")
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        url, (admin, schema) = _pg_schema(base)
        try:
            lease_race(url, "postgresql")
            alert_storm(url, "postgresql")
        finally:
            with admin.connect() as conn:  # type: ignore[attr-defined]
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    scrub_cost()


if __name__ == "__main__":
    main()
