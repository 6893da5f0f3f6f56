"""`digest status` and `digest job`, through the real command line."""

from __future__ import annotations

import json
import re
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from functions.cli import _register, cli
from infra.store import open_store

T0 = datetime(2025, 11, 14, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module", autouse=True)
def commands() -> None:
    _register()


@pytest.fixture
def history() -> None:
    """Three collections and two digest runs, one of them failed."""
    store = open_store()
    for n, (new, stories, cost) in enumerate(
        [(40, 12, 0.0), (15, 5, 0.0), (7, 3, 0.0)]
    ):
        started = T0 + timedelta(hours=3 * n)
        report = {
            "items_new": new,
            "stories": stories,
            "llm": {"calls": 0, "cost_usd": cost},
            "sources": [{"name": "caixin", "status": "failed" if n == 2 else "ok"}],
        }
        store.save_run(f"collect-{n}", "collect", "ok", report, started, started)
    digest = {
        "digests": 4,
        "llm": {"calls": 9, "cost_usd": 0.0123},
        "deliveries": {"sent": 8, "failed": 1, "skipped": 0},
        "fallbacks": [{"kind": "provider", "detail": "deepseek -> qwen"}],
    }
    started = T0 + timedelta(hours=8)
    store.save_run("digest-ok", "digest", "degraded", digest, started, started)
    failed = {"error": "RuntimeError: <script>alert(1)</script>"}
    started = T0 + timedelta(hours=9)
    store.save_run("digest-bad", "digest", "failed", failed, started, started)
    store.close()


def test_status_json_lists_runs_newest_first(history: None) -> None:
    result = CliRunner().invoke(cli, ["status", "--json"])

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert [r["id"] for r in body["runs"]] == [
        "digest-bad",
        "digest-ok",
        "collect-2",
        "collect-1",
        "collect-0",
    ]
    digest = body["runs"][1]
    assert (digest["cost_usd"], digest["sent"], digest["failed"]) == (0.0123, 8, 1)
    assert digest["fallbacks"] == 1
    assert body["runs"][2]["failed_sources"] == 1
    assert body["health"]["ok"] is False


def test_status_prints_a_table(history: None) -> None:
    result = CliRunner().invoke(cli, ["status", "--limit", "3"])

    assert result.exit_code == 0, result.output
    assert "Recent runs" in result.output
    assert "degraded" in result.output and "0.012" in result.output
    assert "collect-0" not in result.output  # limited to three runs
    assert "digest-bad" in result.output  # its error is listed


def test_status_prints_one_run_in_full(history: None) -> None:
    result = CliRunner().invoke(cli, ["status", "--run", "digest-ok"])
    missing = CliRunner().invoke(cli, ["status", "--run", "nope"])

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["status"] == "degraded"
    assert body["report"]["fallbacks"] == [
        {"kind": "provider", "detail": "deepseek -> qwen"}
    ]
    assert body["started_at"] == "2025-11-14 08:00:00+00:00"
    assert missing.exit_code == 1 and "no run 'nope'" in missing.output


def test_status_with_no_runs_says_how_to_start() -> None:
    result = CliRunner().invoke(cli, ["status"])

    assert result.exit_code == 0 and "No runs yet" in result.output


def test_status_html_draws_four_charts_without_scripts(
    history: None, tmp_path: Path
) -> None:
    page = tmp_path / "report" / "runs.html"

    result = CliRunner().invoke(cli, ["status", "--html", str(page)])

    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    assert text.count("<svg") == 4
    assert "<script" not in text and "&lt;script&gt;" in text
    assert "New items per collection run" in text and "LLM cost per run" in text
    # One bar per collection run, heights proportional to new items (40, 15, 7).
    items_chart = text.split("<h2>")[1]
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" fill=', items_chart)]
    assert len(heights) == 3 and heights[0] > heights[1] > heights[2] > 0
    assert heights[0] / heights[2] == pytest.approx(40 / 7, rel=0.01)
    failures = text.split("<h2>")[4]
    assert failures.count("<rect") == 5


def test_job_runs_a_collection_here_with_its_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_run = types.ModuleType("functions.run")

    def collect_and_cluster(settings: Any) -> dict[str, Any]:
        return {"items_new": 3, "stories": 2}

    fake_run.collect_and_cluster = collect_and_cluster  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "functions.run", fake_run)

    result = CliRunner().invoke(cli, ["job", "collect"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "collect" and report["status"] == "ok"
    store = open_store()
    assert store.recent_runs()[0]["report"]["items_new"] == 3
    store.close()
