"""The extractive summary: lead sentences, both scripts, never empty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.extractive import cap_sentence, extractive_summary, split_sentences
from functions.models import Item, Story

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _item(id: str, lang: str, title: str, text: str, minutes: int = 0) -> Item:
    return Item(
        source=f"src-{id}",
        url=f"https://example.test/{id}",
        title=title,
        text=text,
        lang=lang,
        published=T0 + timedelta(minutes=minutes),
        id=id,
    )


def _story(*items: Item) -> Story:
    return Story(
        id="s1",
        title=items[0].title,
        member_ids=[i.id for i in items],
        first_seen=T0,
        last_seen=T0,
        langs=sorted({i.lang for i in items}),
        sources=[i.source for i in items],
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "The port reopened. Ships queued for days! Why now? Nobody said.",
            [
                "The port reopened.",
                "Ships queued for days!",
                "Why now?",
                "Nobody said.",
            ],
            id="english-ends",
        ),
        pytest.param(
            "U.S. officials met Mr. Wang in Jan. 2026 in Beijing. Talks went on.",
            ["U.S. officials met Mr. Wang in Jan. 2026 in Beijing.", "Talks went on."],
            id="abbreviations-do-not-end",
        ),
        pytest.param(
            "港口重新开放。船只排队数日！为何现在？无人回答",
            ["港口重新开放。", "船只排队数日！", "为何现在？", "无人回答"],
            id="chinese-ends-without-space",
        ),
        pytest.param(
            "他说：“会议延期。”随后离开。",
            ["他说：“会议延期。”", "随后离开。"],
            id="closing-quote-stays",
        ),
        pytest.param(
            "GDP grew 5.2% in 2025. 国内生产总值增长5.2%。",
            ["GDP grew 5.2% in 2025.", "国内生产总值增长5.2%。"],
            id="mixed-and-decimals",
        ),
        pytest.param(
            "<p>First <b>line</b> here.</p> <p>Second&nbsp;one.</p>",
            ["First line here.", "Second one."],
            id="markup-removed",
        ),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_lead_sentences_of_the_fullest_member_in_the_reader_language() -> None:
    short = _item("a", "en", "Port reopens", "The port reopened.")
    full = _item(
        "b",
        "en",
        "Shanghai port reopens after storm",
        "Shanghai port reopens after storm. The port reopened on Monday. "
        "Ships had queued for three days. Officials expect normal traffic by Friday. "
        "A fourth sentence is not used.",
    )
    zh = _item("c", "zh", "上海港恢复运营", "上海港周一恢复运营。船只排队三天。")

    summary = extractive_summary(_story(short, full, zh), [short, full, zh], "en")

    assert summary.headline == "Shanghai port reopens after storm"
    assert summary.sentences == [
        "The port reopened on Monday.",
        "Ships had queued for three days.",
        "Officials expect normal traffic by Friday.",
    ]
    assert summary.method == "extractive"
    assert summary.text_lang == ""
    assert [f.item_ids for f in summary.key_facts] == [["b"], ["b"], ["b"]]


def test_chinese_reader_gets_chinese_sentences() -> None:
    en = _item("a", "en", "Port reopens", "The port reopened. Ships queued.")
    text = "上海港周一恢复运营。船只排队三天！官员称周五恢复正常。"
    zh = _item("c", "zh-CN", "上海港恢复运营", text)

    summary = extractive_summary(_story(en, zh), [en, zh], "zh", max_sentences=2)

    assert summary.lang == "zh"
    assert summary.sentences == ["上海港周一恢复运营。", "船只排队三天！"]


def test_no_member_in_reader_language_still_summarized_and_marked() -> None:
    zh = _item("c", "zh", "上海港恢复运营", "上海港周一恢复运营。船只排队三天。")

    summary = extractive_summary(_story(zh), [zh], "en")

    assert summary.lang == "en"
    assert summary.text_lang == "zh"
    assert summary.sentences == ["上海港周一恢复运营。", "船只排队三天。"]


def test_title_only_item_gives_one_sentence() -> None:
    bare = _item("a", "en", "Central bank holds rates", "")

    summary = extractive_summary(_story(bare), [bare], "en")

    assert summary.sentences == ["Central bank holds rates"]


def test_run_on_sentence_cut_at_clause_and_marked() -> None:
    sentence = "数据显示，" + "，".join(["出口增长明显"] * 80) + "。"

    capped = cap_sentence(sentence, limit=100)

    assert len(capped) <= 101
    assert capped.endswith("明显…")
