"""The one renderer: escaping, labels, and splitting the way Telegram counts."""

from __future__ import annotations

import html
import re

import pytest

from bot.render import (
    render_html_page,
    render_telegram,
    render_text,
    split_html,
    telegram_parts,
    utf16_len,
    write_preview,
)
from functions.models import SourceLink
from tests.bot_factories import make_digest, make_entry
from tests.fakes.telegram_html import parse_html

HOSTILE = 'Beijing <b>bold</b> & <script>alert("x")</script> </i> &amp;'


def test_hostile_headline_is_escaped_in_telegram_html() -> None:
    digest = make_digest([make_entry(1, headline=HOSTILE, text="a < b && c > d")])

    [message] = render_telegram(digest)

    visible = parse_html(message)
    assert HOSTILE in visible
    assert "a < b && c > d" in visible
    assert "<script>" not in message
    assert "&lt;script&gt;" in message


def test_hostile_outlet_name_and_url_are_escaped() -> None:
    link = SourceLink('Daily "<Echo>"', 'https://x.example/a?b=1&c="2"', "commercial")
    digest = make_digest([make_entry(1, links=[link])])

    [message] = render_telegram(digest)

    visible = parse_html(message)
    assert 'Daily "<Echo>" (commercial)' in visible
    assert 'href="https://x.example/a?b=1&amp;c=&quot;2&quot;"' in message


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("data:text/html,<b>", id="data"),
        pytest.param("  ", id="blank"),
    ],
)
def test_links_that_are_not_http_show_the_name_only(url: str) -> None:
    digest = make_digest([make_entry(1, links=[SourceLink("Outlet", url, "")])])

    [message] = render_telegram(digest)
    page = render_html_page([digest], title="t")

    assert "href" not in message
    assert "Sources: Outlet" in parse_html(message)
    assert "javascript:" not in page.split("</style>")[1]


def test_ownership_label_follows_each_outlet() -> None:
    [message] = render_telegram(make_digest(count=1))

    visible = parse_html(message)
    assert "Xinhua (state media), Reuters (wire service)" in visible


def test_unknown_ownership_adds_no_label() -> None:
    link = SourceLink("Some Blog", "https://blog.example/", "unknown")
    [message] = render_telegram(make_digest([make_entry(1, links=[link])]))

    assert "Sources: Some Blog\n" in parse_html(message) + "\n"


def test_generated_time_is_shown_everywhere() -> None:
    digest = make_digest()

    assert "Generated 2025-05-12 08:30 UTC" in parse_html(render_telegram(digest)[0])
    assert "Generated 2025-05-12 08:30 UTC" in render_text(digest)
    assert "Generated 2025-05-12 08:30 UTC" in render_html_page([digest], title="t")


@pytest.mark.parametrize(
    ("method", "verdict", "expected"),
    [
        pytest.param(
            "extractive",
            "unchecked",
            "Extractive summary: sentences taken from the articles · Not fact-checked",
            id="extractive",
        ),
        pytest.param(
            "extractive-fallback",
            "verified",
            "the written one did not pass the fact-check",
            id="fallback",
        ),
        pytest.param(
            "llm",
            "partly-verified",
            "Written summary · ◐ Partly verified",
            id="partly",
        ),
        pytest.param("llm", "verified", "✓ Fact-checked against the articles", id="ok"),
    ],
)
def test_summary_method_and_verdict_are_marked(
    method: str, verdict: str, expected: str
) -> None:
    digest = make_digest([make_entry(1, method=method, verdict=verdict)])

    assert expected in parse_html(render_telegram(digest)[0])
    assert expected in render_text(digest)
    assert html.escape(expected, quote=False) in render_html_page([digest], title="t")


def test_chinese_digest_uses_chinese_labels() -> None:
    digest = make_digest(count=1, lang="zh")

    visible = parse_html(render_telegram(digest)[0])

    assert "生成于 2025-05-12 08:30 UTC" in visible
    assert "Xinhua (官方媒体)" in visible
    assert "已对照原文核查" in visible


def test_empty_digest_says_nothing_worth_sending() -> None:
    digest = make_digest([])

    messages = render_telegram(digest)

    assert len(messages) == 1
    assert "Nothing worth sending today." in parse_html(messages[0])
    assert "Nothing worth sending today." in render_text(digest)
    assert "Nothing worth sending today." in render_html_page([digest], title="t")


def test_short_digest_is_one_message_carrying_every_story() -> None:
    digest = make_digest(count=3)

    [part] = telegram_parts(digest)

    assert part.story_ids == ("s0001", "s0002", "s0003")
    assert not part.html.startswith("<i>(1/")


def test_long_digest_splits_at_story_boundaries() -> None:
    text = "Growth slowed as exports fell. " * 40
    digest = make_digest([make_entry(n, text=text) for n in range(1, 9)])

    parts = telegram_parts(digest)

    assert len(parts) > 1
    seen = [story for part in parts for story in part.story_ids]
    assert seen == [f"s{n:04d}" for n in range(1, 9)]
    for n, part in enumerate(parts, start=1):
        assert utf16_len(part.html) <= 4096
        assert part.html.startswith(f"<i>({n}/{len(parts)})</i>\n")
        visible = parse_html(part.html)
        for story in part.story_ids:
            number = int(story[1:])
            assert visible.count(f"{number}. Story {number}") == 1


@pytest.mark.parametrize(
    "char",
    [
        pytest.param("😀", id="emoji"),
        pytest.param("𠀀", id="cjk-extension-b"),
        pytest.param("👩‍👩‍👧", id="zwj-family"),
        pytest.param("中", id="bmp-cjk"),
    ],
)
def test_splitting_counts_utf16_and_never_breaks_a_character(char: str) -> None:
    text = (char * 7 + " ") * 500
    digest = make_digest([make_entry(n, text=text) for n in range(1, 4)], lang="zh")

    messages = render_telegram(digest, limit=1000)

    assert len(messages) > 3
    for message in messages:
        assert utf16_len(message) <= 1000
        message.encode("utf-8")  # a lone surrogate would raise here
        visible = parse_html(message)
        assert visible.replace(char, "").replace(" ", "").replace("\n", "") != ""
    rebuilt = "".join(parse_html(m) for m in messages)
    assert rebuilt.count(char) == 3 * 7 * 500


def test_oversized_story_splits_inside_without_breaking_tags() -> None:
    facts = tuple(f"Fact {n} with <tags> & more detail." for n in range(200))
    digest = make_digest([make_entry(1, facts=facts)])

    parts = telegram_parts(digest, limit=1500)
    messages = [part.html for part in parts]

    assert len(messages) > 2
    assert [part.story_ids for part in parts][-2:] == [(), ("s0001",)]
    for message in messages:
        assert utf16_len(message) <= 1500
        parse_html(message)
    visible = "".join(parse_html(m) for m in messages)
    for n in range(200):
        assert f"• Fact {n} with <tags> & more detail." in visible


def test_split_html_reopens_tags_across_a_cut() -> None:
    fragment = "<b>" + "word " * 100 + "</b>"

    pieces = split_html(fragment, 60)

    assert len(pieces) > 5
    for piece in pieces:
        assert utf16_len(piece) <= 60
        assert piece.startswith("<b>") and piece.endswith("</b>")
        parse_html(piece)


def test_split_html_without_spaces_cuts_between_entities() -> None:
    fragment = "&amp;" * 50 + "😀" * 50

    pieces = split_html(fragment, 32)

    for piece in pieces:
        assert utf16_len(piece) <= 32
        parse_html(piece)
    assert "".join(parse_html(p) for p in pieces) == "&" * 50 + "😀" * 50


def test_control_characters_never_reach_a_terminal() -> None:
    digest = make_digest([make_entry(1, headline="Title\x1b[31mred\x07\u202e")])

    text = render_text(digest)

    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "1. Title[31mred" in text


def test_html_page_has_one_section_per_reader_and_escapes() -> None:
    first = make_digest([make_entry(1, headline=HOSTILE)], reader_id="r1")
    second = make_digest(count=2, reader_id="r2", lang="zh")

    page = render_html_page([first, second], title="Preview <&>")

    assert page.count("<section") == 2
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "<title>Preview &lt;&amp;&gt;</title>" in page
    body = page.split("<body>")[1]
    assert not re.search(
        r"<(?!/?(h1|h2|h3|p|section|article|a|ul|li|body|html)\b)", body
    )


def test_write_preview_writes_the_page(tmp_path) -> None:
    target = tmp_path / "out" / "preview.html"

    written = write_preview([make_digest()], target)

    assert written == target
    assert "Story 1" in target.read_text(encoding="utf-8")
    assert list(target.parent.iterdir()) == [target]


def test_a_claim_only_one_outlet_carries_is_attributed() -> None:
    entry = make_entry(1, text="Exports rose 5%.")
    entry.summary.sentences = ["Exports rose 5%.", "Imports fell."]
    entry.summary.sentence_sources = [["Reuters"], ["Reuters", "Xinhua"]]

    visible = parse_html(render_telegram(make_digest([entry]))[0])

    assert "Exports rose 5%. (Reuters) Imports fell." in visible


def test_key_facts_that_repeat_the_summary_are_not_listed_twice() -> None:
    entry = make_entry(1, text="Exports rose.", facts=("Exports rose.", "Tariffs cut."))

    text = render_text(make_digest([entry]))

    assert text.count("Exports rose.") == 1
    assert "   • Tariffs cut." in text


def test_a_story_back_with_new_facts_is_marked_as_an_update() -> None:
    entry = make_entry(1)
    entry.is_update = True

    assert "<b>1. Update: Story 1</b>" in render_telegram(make_digest([entry]))[0]
    assert "1. 更新: Story 1" in render_text(make_digest([entry], lang="zh"))


def test_summary_in_another_language_says_so() -> None:
    entry = make_entry(1)
    entry.summary.text_lang = "zh"

    assert "in Chinese: no source in English" in render_text(make_digest([entry]))


def test_quiet_day_note_replaces_the_empty_line() -> None:
    digest = make_digest([], opening="Nothing today met the bar <for> your digest.")

    [message] = render_telegram(digest)

    visible = parse_html(message)
    assert "Nothing today met the bar <for> your digest." in visible
    assert "Nothing worth sending today." not in visible
    assert "Nothing worth sending today." not in render_text(digest)
