"""`digest eval dedup`: metrics, the labeled-file reader and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from functions.cli import _register, cli
from functions.dedup_eval import LabeledFileError, bcubed, load_labeled, pairwise
from tests.fakes.upstash import ServedFake

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "dedup_small.jsonl"


def test_pairwise_counts_pairs_put_together() -> None:
    gold = {"a": "x", "b": "x", "c": "x", "d": "y"}
    predicted = {"a": "1", "b": "1", "c": "2", "d": "2"}

    score = pairwise(predicted, gold)

    # Gold pairs ab ac bc; predicted ab cd; one in common.
    assert score.precision == pytest.approx(1 / 2)
    assert score.recall == pytest.approx(1 / 3)
    assert score.f1 == pytest.approx(0.4)


def test_pairwise_can_score_a_kind_of_pair_apart() -> None:
    gold = {"en1": "x", "zh1": "x", "en2": "y", "zh2": "y"}
    predicted = {"en1": "1", "zh1": "1", "en2": "2", "zh2": "3"}
    lang = {k: k[:2] for k in gold}

    cross = pairwise(predicted, gold, lambda a, b: lang[a] != lang[b])

    assert (cross.precision, cross.recall) == (1.0, 0.5)


def test_bcubed_averages_per_item() -> None:
    gold = {"a": "x", "b": "x", "c": "y"}
    predicted = {"a": "1", "b": "2", "c": "2"}

    score = bcubed(predicted, gold)

    # Precision per item: 1, 1/2, 1/2; recall: 1/2, 1/2, 1.
    assert score.precision == pytest.approx(2 / 3)
    assert score.recall == pytest.approx(2 / 3)


def test_all_singletons_have_perfect_pairwise_precision_and_no_recall() -> None:
    gold = {"a": "x", "b": "x"}

    score = pairwise({"a": "1", "b": "2"}, gold)

    assert (score.precision, score.recall, score.f1) == (1.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("{not json", ":2: not JSON", id="not-json"),
        pytest.param('{"id": "x"}', ":2: missing source, lang", id="missing-fields"),
        pytest.param(
            '{"id": "a", "source": "s", "lang": "en", "title": "t", "text": "",'
            ' "url": "https://a.example/", "published": "2026-03-02T00:00:00Z",'
            ' "cluster": "c"}',
            ":2: duplicate id 'a'",
            id="duplicate-id",
        ),
    ],
)
def test_a_bad_labeled_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    first = FIXTURE.read_text(encoding="utf-8").splitlines()[0]
    path = tmp_path / "bad.jsonl"
    path.write_text(
        first.replace('"id": "q1"', '"id": "a"') + "\n" + line + "\n", encoding="utf-8"
    )

    with pytest.raises(LabeledFileError, match=message):
        load_labeled(path)


def test_labeled_records_become_items_with_url_keys() -> None:
    records = load_labeled(FIXTURE)

    first = records[0]
    assert first.cluster == "sichuan-quake"
    assert first.item.keys == ["url:reuters.example/q1"]
    assert first.item.published.utcoffset().total_seconds() == 0


def run_cli(*args: str) -> tuple[int, str]:
    """Exit code and stdout, or stderr when the command failed."""
    _register()
    result = CliRunner().invoke(cli, ["eval", "dedup", *args])
    return result.exit_code, result.stdout if result.exit_code == 0 else result.stderr


def test_eval_dedup_json_has_the_full_pipeline_scores() -> None:
    code, output = run_cli(str(FIXTURE), "--json", "--no-sweep")

    assert code == 0, output
    result = json.loads(output)
    assert set(result["pairwise"]) == {"precision", "recall", "f1"}
    assert set(result["bcubed"]) == {"precision", "recall", "f1"}
    assert set(result["sieves"]) == {"exact", "near", "semantic"}
    assert result["items"] == 40
    assert result["gold_pairs"] == {"en-en": 9, "zh-zh": 6, "en-zh": 30}
    assert result["same_language"]["f1"] >= 0.9
    assert result["sieves"]["exact"]["pairwise"]["precision"] == 1.0


def test_eval_dedup_prints_a_table_with_a_sweep(tmp_path: Path) -> None:
    small = tmp_path / "small.jsonl"
    small.write_text(
        "\n".join(FIXTURE.read_text(encoding="utf-8").splitlines()[:6]) + "\n",
        encoding="utf-8",
    )

    code, output = run_cli(str(small))

    assert code == 0, output
    assert "all sieves" in output
    assert "cross-language pairs" in output
    assert "sweep en-en" in output and "sweep quorum" in output


def test_eval_dedup_names_a_missing_file(tmp_path: Path) -> None:
    code, output = run_cli(str(tmp_path / "nope.jsonl"))

    assert code == 1
    assert "no labeled file" in output


def test_eval_dedup_with_upstash_needs_it_configured() -> None:
    code, output = run_cli(str(FIXTURE), "--index", "upstash")

    assert code == 1
    assert "UPSTASH_VECTOR_REST_URL" in output


def test_eval_dedup_can_embed_with_upstash(
    upstash: ServedFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTASH_VECTOR_REST_URL", upstash.url)
    monkeypatch.setenv("UPSTASH_VECTOR_REST_TOKEN", upstash.fake.token)

    code, output = run_cli(str(FIXTURE), "--index", "upstash", "--json", "--no-sweep")

    assert code == 0, output
    result = json.loads(output)
    assert result["embedder"] == "upstash:BGE_M3"
    assert set(upstash.fake.stored("digest-eval")) == {
        json.loads(line)["id"] for line in FIXTURE.read_text().splitlines()
    }
