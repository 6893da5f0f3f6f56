"""China to Watch on Modal: two schedules, the Telegram webhook and a health check.

Every Function body is one call into `functions.jobs` (or the bot's ASGI
app), which also runs on a laptop as `digest job collect|digest`. This file
only says where, when, with which secret and for how long.

    modal deploy modal_app.py              # schedules and endpoints go live
    modal run modal_app.py --job collect   # one run now, on Modal

Schedules (UTC; Modal's free plan allows few, so there are two):

* `collect` at minute 15 of every third hour: fetch, store, cluster.
* `digest` every hour on the hour: readers whose local delivery hour has
  come get their digest. One hourly job serves every time zone, instead
  of one schedule per zone.

A lease in the state store keeps two runs of a job from overlapping (a
manual run, a retry, a slow run meeting the next tick); `max_containers=1`
only limits containers, which a redeploy or a manual run can get around.
See docs/deploy.md for the secret, the webhook and the dashboards.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import modal

from functions import jobs
from infra import telemetry

ROOT = Path(__file__).resolve().parent
APP_NAME = "china-to-watch"
SECRET_NAME = "china-to-watch"
REQUIRED_KEYS = ["TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "DATABASE_URL"]
REQUIREMENTS = ROOT / "requirements.lock"
MINUTES = 60

COLLECT = jobs.SCHEDULES["collect"]
DIGEST = jobs.SCHEDULES["digest"]

# Telegram allows about 30 messages a second per bot, shared by every
# container sending for it: three batch containers get ten each.
DELIVERY_CONTAINERS = 3
SEND_RATE_PER_CONTAINER = 30 // DELIVERY_CONTAINERS


def _release() -> str:
    """`china-to-watch@<commit>` at deploy time; containers inherit the same value."""
    if os.environ.get("SENTRY_RELEASE"):
        return os.environ["SENTRY_RELEASE"]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = "unknown"
    return f"china-to-watch@{sha}"


ENV: dict[str, str | None] = {
    "SENTRY_RELEASE": _release(),
    "SENTRY_ENVIRONMENT": "production",
}

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install_from_requirements(str(REQUIREMENTS))
    .env({"PYTHONUNBUFFERED": "1"})
    .add_local_file(ROOT / "sources.toml", "/root/sources.toml")
    .add_local_file(ROOT / "prices.toml", "/root/prices.toml")
    .add_local_dir(ROOT / "prompts", "/root/prompts")
    # Whole packages, data files included; only caches stay behind.
    .add_local_python_source(
        "functions", "bot", "infra", ignore=["**/__pycache__/**", "**/*.pyc"]
    )
)

secret = modal.Secret.from_name(SECRET_NAME, required_keys=REQUIRED_KEYS)

app = modal.App(APP_NAME, image=image)


def _settings() -> Any:
    from infra.config import get_settings
    from infra.logs import setup_logging

    settings = get_settings()
    setup_logging(settings.log_level)
    return settings


@app.function(
    schedule=modal.Cron(COLLECT.cron, timezone=COLLECT.timezone),
    secrets=[secret],
    env=ENV,
    timeout=COLLECT.timeout_s,
    # Collection is idempotent, so a transient failure is simply run again.
    retries=modal.Retries(max_retries=2, backoff_coefficient=2.0, initial_delay=30.0),
    max_containers=1,
)
def collect() -> dict[str, Any]:
    """Fetch every source, store new items and cluster them into stories."""
    return jobs.collect_job(_settings(), holder=modal.current_function_call_id())


@app.function(
    schedule=modal.Cron(DIGEST.cron, timezone=DIGEST.timezone),
    secrets=[secret],
    env=ENV,
    timeout=DIGEST.timeout_s,
    # Deliveries are recorded per reader and edition, so a retry sends nothing twice.
    retries=modal.Retries(max_retries=1, initial_delay=60.0),
    max_containers=1,
)
def digest() -> dict[str, Any]:
    """Build and send the digests of the readers whose delivery hour it is."""
    return jobs.digest_job(
        _settings(),
        remote_batch=deliver_batch,
        holder=modal.current_function_call_id(),
    )


@app.function(
    secrets=[secret],
    env={**ENV, "DIGEST_SEND_RATE_PER_S": str(SEND_RATE_PER_CONTAINER)},
    timeout=jobs.BATCH_TIMEOUT_S,
    retries=modal.Retries(max_retries=2, backoff_coefficient=2.0, initial_delay=10.0),
    max_containers=DELIVERY_CONTAINERS,
)
def deliver_batch(
    reader_ids: list[str], now: datetime, run_id: str = ""
) -> dict[str, Any]:
    """One batch of readers of a digest run: rank, summarize what is missing, send."""
    return jobs.deliver_batch(_settings(), reader_ids, now=now, run_id=run_id)


@app.function(secrets=[secret], env=ENV, timeout=60, scaledown_window=5 * MINUTES)
@modal.concurrent(max_inputs=50)
@modal.asgi_app(label="china-to-watch-telegram")
def telegram() -> Any:
    """The Telegram webhook; the app itself checks the secret-token header."""
    from bot.webhook import create_app

    settings = _settings()
    telemetry.init_sentry(settings)
    return create_app(settings)


@app.function(secrets=[secret], env=ENV, timeout=30)
@modal.concurrent(max_inputs=10)
@modal.asgi_app(label="china-to-watch-health", requires_proxy_auth=True)
def health() -> Any:
    """Are the jobs on time and succeeding? Needs a Modal proxy auth token."""
    return jobs.health_app(_settings())


@app.local_entrypoint()
def main(job: str = "collect") -> None:
    """Run one scheduled job now, on Modal: `modal run modal_app.py --job digest`."""
    functions = {"collect": collect, "digest": digest}
    if job not in functions:
        raise SystemExit(f"--job must be one of {', '.join(functions)}")
    print(json.dumps(functions[job].remote(), indent=2, default=str))
