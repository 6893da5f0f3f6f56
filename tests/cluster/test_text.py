"""Folding, shingles, fact tokens and the hashing embedder."""

from __future__ import annotations

import numpy as np
import pytest

from functions.textnorm import fact_tokens, fact_weight, fold, segments, shingles
from infra.embed import HashingEmbedder, as_unit_rows, embedding_text


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        pytest.param("ＰＭＩ升至５０．３", "pmi升至50 3", id="full-width-to-half"),
        pytest.param("颱風警報發佈", "台风警报发布", id="traditional-to-simplified"),
        pytest.param("  Xi  meets—Lula!  ", "xi meets lula", id="case-and-punctuation"),
    ],
)
def test_fold(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def test_traditional_and_simplified_copies_share_their_shingles() -> None:
    simplified = shingles("四川石棉县发生5.8级地震，已造成3人遇难，41人受伤。")
    traditional = shingles("四川石棉縣發生５．８級地震，已造成3人遇難，41人受傷。")

    assert np.array_equal(simplified, traditional)


def test_shingles_are_stable_across_processes() -> None:
    # Sketches are stored, so the hash may not depend on PYTHONHASHSEED.
    assert shingles("abcdef").tolist() == shingles("abcdef").tolist()
    assert shingles("abcdef")[:1].tolist() == [2272833956]


def test_segments_hash_sentences_by_their_folded_form() -> None:
    parts = segments("Issued by the County Office. 本县发布通知。Short.")

    assert [s for _, s in parts] == ["Issued by the County Office.", "本县发布通知。"]
    assert segments("ISSUED BY THE COUNTY OFFICE")[0][0] == parts[0][0]


def test_fact_tokens_keep_numbers_and_names_but_not_dates() -> None:
    facts = fact_tokens(
        "On Nov. 30 at 10:30, officials said 1,200 people in Luding County were "
        "moved and 3.5% of homes damaged. Reuters reported the Ministry of "
        "Emergency Management's figures in 2026.",
        "en",
    )

    assert facts == {
        "n:1200",
        "n:3.5",
        "en:luding county",
        "en:emergency management",
    }


def test_chinese_fact_tokens_are_numbers_and_quoted_names() -> None:
    facts = fact_tokens(
        "11月30日，“澜芯半导体”宣布7纳米芯片量产，明年出货30万片。", "zh"
    )

    assert facts == {"n:7", "n:30", "zh:澜芯半导体"}


def test_numbers_weigh_more_than_names() -> None:
    assert fact_weight({"n:31", "n:1400"}) == 2.0
    assert fact_weight({"en:cctv", "en:sichuan", "n:31"}) == 2.0
    assert fact_weight({"en:cctv", "en:sichuan"}) == 1.0


def test_embedding_text_is_title_and_start_of_text() -> None:
    text = embedding_text("Title", "Title. " + "x" * 500)

    assert text == "Title. " + "x" * 300


def test_hashing_embedder_gives_unit_vectors_that_rank_rewrites_first() -> None:
    embedder = HashingEmbedder()
    vectors = embedder.embed(
        [
            "China's central bank cuts reserve requirement ratio by 50 basis points",
            "PBOC lowers banks' reserve requirement ratio by 50 basis points",
            "Giant panda twins born at Chengdu research base",
        ]
    )

    assert vectors.shape == (3, embedder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert vectors[0] @ vectors[1] > 0.4 > vectors[0] @ vectors[2]


def test_any_embedder_output_becomes_unit_rows() -> None:
    rows = as_unit_rows([[3.0, 4.0], [0.0, 0.0]], 2)

    assert rows.dtype == np.float32
    assert rows.tolist() == [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    assert as_unit_rows([], 4).shape == (0, 4)
