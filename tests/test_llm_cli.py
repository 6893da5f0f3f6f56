"""`digest cost`: the month's model spend, as text and as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from functions.cli import _register, cli
from infra.llm.ledger import CallRecord, Ledger
from infra.store import open_store


def _record_calls() -> None:
    store = open_store()
    ledger = Ledger(store)
    now = datetime.now(UTC)
    calls = [
        ("deepseek", "deepseek-flash", "summarize", "ok", 0.004),
        ("deepseek", "deepseek-flash", "summarize", "refused", 0.0),
        ("qwen", "qwen-plus", "summarize", "ok", 0.010),
        ("qwen", "qwen-plus", "factcheck", "ok", 0.006),
        ("openai", "gpt-6-luna", "factcheck", "transient", 0.0),
    ]
    for i, (provider, model, stage, outcome, usd) in enumerate(calls):
        ledger.record(
            CallRecord(
                at=now - timedelta(minutes=5 - i),
                run_id="run-a" if i < 3 else "run-b",
                stage=stage,
                provider=provider,
                model=model,
                outcome=outcome,
                tier="standard",
                cost_usd=usd,
                prompt_tokens=1000,
                cache_hit_tokens=400,
                completion_tokens=100,
            )
        )
    store.close()


def test_cost_json_has_the_month_the_projection_and_calls_by_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DIGEST_BUDGET_USD", "20")
    _register()
    _record_calls()

    result = CliRunner().invoke(cli, ["cost", "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["month_to_date_usd"] == 0.02
    assert report["projected_month_usd"] >= report["month_to_date_usd"]
    assert report["budget_usd"] == 20
    assert report["calls"]["deepseek"]["calls"] == 2
    assert report["calls"]["deepseek"]["refused"] == 1
    assert report["calls"]["openai"]["failed"] == 1
    assert report["calls"]["qwen"]["models"]["qwen-plus"]["usd"] == 0.016
    assert report["stages"]["factcheck"]["calls"] == 2
    assert report["prefix_cache_hit_rate"] == 0.4
    assert [(r["run_id"], r["calls"], r["usd"]) for r in report["recent_runs"]] == [
        ("run-b", 2, 0.006),
        ("run-a", 3, 0.014),
    ]


def test_cost_text_lists_providers_models_and_stages() -> None:
    _register()
    _record_calls()

    result = CliRunner().invoke(cli, ["cost"])

    assert result.exit_code == 0, result.output
    assert "month to date   $0.0200" in result.output
    assert "budget          $50.00" in result.output
    for word in ("deepseek-flash", "qwen-plus", "gpt-6-luna", "factcheck", "run-b"):
        assert word in result.output


def test_cost_on_an_empty_ledger_says_so() -> None:
    _register()

    result = CliRunner().invoke(cli, ["cost"])

    assert result.exit_code == 0, result.output
    assert "No model calls this month." in result.output
