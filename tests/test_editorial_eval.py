"""`digest eval factcheck` and `digest eval rank` on the shipped samples (issue 5)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from functions.cli_eval_editorial import factcheck_cmd, rank_cmd
from functions.editorial_eval import (
    KINDS,
    evaluate_factcheck,
    load_feedback_log,
    load_samples,
    ndcg,
    plant_errors,
    replay_rank,
)
from tests.editorial_fakes import FakeChain, careful_checker


def test_samples_load_with_articles_and_references() -> None:
    samples, sources = load_samples()

    assert len(samples) == 24
    assert {s.day for s in samples} == {0, 1, 2, 3}
    assert all(s.items and s.reference["en"] for s in samples)
    assert sum(1 for s in samples if "zh" in s.reference) >= 10
    assert sources["Harbor Wire"].ownership == "wire service"


def test_every_kind_of_error_is_planted_and_each_plant_changes_the_text() -> None:
    samples, _ = load_samples()

    plants = plant_errors(samples)

    kinds = {p.kind for p in plants}
    assert kinds == {"clean", *KINDS}
    planted = [p for p in plants if p.kind != "clean"]
    assert all(p.sentence != p.original for p in planted)
    assert len(planted) > 200
    assert plant_errors(samples) == plants


async def test_deterministic_pass_catches_most_errors_without_false_alarms() -> None:
    samples, _ = load_samples()

    scores = (await evaluate_factcheck(samples)).as_dict()

    assert scores["deterministic"]["detection_rate"] >= 0.9
    assert scores["deterministic"]["false_alarm_rate"] <= 0.05
    assert scores["with_model"]["detection_rate"] is None


async def test_model_pass_adds_to_the_deterministic_pass() -> None:
    samples, _ = load_samples()
    chain = FakeChain(factcheck=careful_checker)

    scores = (await evaluate_factcheck(samples[:6], chain)).as_dict()

    assert scores["model"] == "deepseek"
    model, alone = scores["with_model"], scores["deterministic"]
    assert model["detection_rate"] >= alone["detection_rate"]
    assert chain.stage_calls("factcheck")


def test_ndcg_rewards_putting_the_liked_story_first() -> None:
    gains = {"a": 1.0}

    assert ndcg(["a", "b", "c"], gains, 3) == 1.0
    assert ndcg(["b", "a", "c"], gains, 3) < 1.0
    assert ndcg(["b", "c", "d"], gains, 3) == 0.0


def test_rank_replay_beats_recency_and_learns_from_taps() -> None:
    samples, sources = load_samples()

    result = replay_rank(samples, sources, load_feedback_log(), k=3)

    assert result["evaluated"] == 16
    assert result["ndcg"] > result["recency_ndcg"]
    assert result["ndcg"] > result["without_feedback_ndcg"]


def test_eval_factcheck_command_prints_table_and_json() -> None:
    runner = CliRunner()

    table = runner.invoke(factcheck_cmd, [])
    as_json = runner.invoke(factcheck_cmd, ["--json"])

    assert table.exit_code == 0, table.output
    assert "false alarm" in table.output
    assert "model pass not run" in table.output
    data = json.loads(as_json.output)
    assert data["planted_errors"] > 200
    assert set(data["deterministic"]["by_kind"]) == set(KINDS)


def test_eval_rank_command_prints_table_and_json() -> None:
    runner = CliRunner()

    table = runner.invoke(rank_cmd, ["-k", "3"])
    as_json = runner.invoke(rank_cmd, ["--json"])

    assert table.exit_code == 0, table.output
    assert "recency" in table.output
    data = json.loads(as_json.output)
    assert {"ndcg", "recency_ndcg", "without_feedback_ndcg", "rows"} <= set(data)
