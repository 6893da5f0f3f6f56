"""Canonical URLs, publication times, visible text and language of one entry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from functions.models import Source
from functions.normalize import (
    canonical_url,
    detect_lang,
    google_news_target,
    resolve_time,
    strip_html,
)

NOW = datetime(2025, 11, 14, 10, 0, tzinfo=UTC)  # 18:00 in Beijing
SHANGHAI = Source("xinhua-like", "https://example.test/rss", timezone="Asia/Shanghai")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            "HTTPS://News.Example.TEST:443/a/b?id=7#top",
            "https://news.example.test/a/b?id=7",
            id="case-default-port-fragment",
        ),
        pytest.param(
            "https://example.test/a?utm_source=x&id=7&UTM_Medium=y&fbclid=1&gclid=2"
            "&spm=a.b.c&mc_cid=3",
            "https://example.test/a?id=7",
            id="tracking-parameters",
        ),
        pytest.param(
            "https://example.test/search?q=a+b&path=%2Fx&flag",
            "https://example.test/search?q=a+b&path=%2Fx&flag",
            id="query-kept-as-written",
        ),
        pytest.param("http://[::1]:8080/feed", "http://[::1]:8080/feed", id="ipv6"),
        pytest.param("https://example.test", "https://example.test/", id="empty-path"),
        pytest.param("http://[::1/feed", "http://[::1/feed", id="broken-ipv6-kept"),
    ],
)
def test_canonical_url(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        pytest.param("/news/1", "https://example.test/news/1", id="root-relative"),
        pytest.param("2.html", "https://example.test/feeds/2.html", id="relative"),
        pytest.param("//cdn.example.test/x", "https://cdn.example.test/x", id="scheme"),
    ],
)
def test_relative_links_resolve_against_the_feed(link: str, expected: str) -> None:
    assert canonical_url(link, "https://example.test/feeds/rss.xml") == expected


def test_google_news_redirect_with_a_url_parameter() -> None:
    link = "https://news.google.com/url?url=https://example.test/story&ct=ga"

    assert google_news_target(link) == "https://example.test/story"


@pytest.mark.parametrize(
    ("raw", "source", "expected", "estimated"),
    [
        pytest.param(
            "2025-11-14 08:00:00",
            SHANGHAI,
            datetime(2025, 11, 14, 0, 0, tzinfo=UTC),
            False,
            id="naive-read-in-source-zone",
        ),
        pytest.param(
            "2025年11月14日 08:30",
            SHANGHAI,
            datetime(2025, 11, 14, 0, 30, tzinfo=UTC),
            False,
            id="chinese-date-naive",
        ),
        pytest.param(
            "Fri, 14 Nov 2025 17:00:00 GMT",
            SHANGHAI,
            datetime(2025, 11, 14, 9, 0, tzinfo=UTC),
            False,
            id="beijing-time-labelled-gmt-lands-in-future",
        ),
        pytest.param(
            "Fri, 14 Nov 2025 08:00:00 GMT",
            Source("x", "u", timezone="Asia/Shanghai", gmt_means_local=True),
            datetime(2025, 11, 14, 0, 0, tzinfo=UTC),
            False,
            id="source-known-to-label-local-time-gmt",
        ),
        pytest.param(
            "Fri, 14 Nov 2025 08:00:00 +0800",
            SHANGHAI,
            datetime(2025, 11, 14, 0, 0, tzinfo=UTC),
            False,
            id="explicit-offset",
        ),
        pytest.param(
            "Fri, 14 Nov 2025 08:00:00 -0000",
            SHANGHAI,
            datetime(2025, 11, 14, 0, 0, tzinfo=UTC),
            False,
            id="rfc822-unknown-zone",
        ),
        pytest.param("2030-01-01T00:00:00Z", SHANGHAI, NOW, True, id="future"),
        pytest.param(
            "Thu, 01 Jan 1970 00:00:00 GMT", SHANGHAI, NOW, True, id="epoch-placeholder"
        ),
        pytest.param(None, SHANGHAI, NOW, True, id="missing"),
        pytest.param("last Tuesday", SHANGHAI, NOW, True, id="unparsable"),
    ],
)
def test_publication_time(
    raw: str | None, source: Source, expected: datetime, estimated: bool
) -> None:
    result = resolve_time(raw, source, NOW)

    assert (result.published, result.estimated) == (expected, estimated)


def test_a_utc_time_far_in_the_future_is_not_taken_for_local_time() -> None:
    result = resolve_time("Sat, 15 Nov 2025 10:00:00 GMT", SHANGHAI, NOW)

    assert (result.published, result.estimated, result.note) == (
        NOW,
        True,
        "date in the future",
    )


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        pytest.param(
            "<p>Rates <b>cut</b>&nbsp;by&#160;0.25&#x25; &amp; more</p>",
            "Rates cut by 0.25% & more",
            id="tags-and-entities",
        ),
        pytest.param(
            "<p>One</p><p>Two<br>Three</p><ul><li>Four</li></ul>",
            "One Two Three Four",
            id="blocks-become-spaces",
        ),
        pytest.param(
            "<script>track()</script><style>p{}</style>Shown"
            "<span style='display: none'>ad</span><div hidden>x</div>",
            "Shown",
            id="scripts-styles-hidden",
        ),
        pytest.param(
            '<div style="display:none"><p>hidden</div>Visible after',
            "Visible after",
            id="unclosed-tag-inside-hidden-element",
        ),
        pytest.param(
            '<span style="font-size:0.9em">Small print</span> counts',
            "Small print counts",
            id="small-font-is-not-hidden",
        ),
        pytest.param(
            '<span style="font-size:0px">stuffing</span>Real', "Real", id="zero-font"
        ),
        pytest.param(
            "Word HTML <![if !supportLists]>1.<![endif]> and <![foo broken",
            "Word HTML 1. and <![foo broken",
            id="malformed-marked-section",
        ),
        pytest.param("  spaced \n\t out  ", "spaced out", id="plain-text"),
    ],
)
def test_strip_html(fragment: str, expected: str) -> None:
    assert strip_html(fragment) == expected


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        pytest.param("市政府宣布新的公交线路下月开通", "zh", id="simplified"),
        pytest.param(
            "香港政府今日表示新的渡輪航線將於下月開通", "zh", id="traditional"
        ),
        pytest.param("习近平 meets APEC leaders in 庆州 (Gyeongju)", "en", id="names"),
        pytest.param("苹果公司发布 iPhone 17 新品", "zh", id="mixed-brand"),
        pytest.param("Ferry timetable changes", "en", id="english"),
    ],
)
def test_language_detection(text: str, lang: str) -> None:
    assert detect_lang(text) == lang


def test_a_megabyte_headline_is_cut_at_a_word_and_the_embedding_text_stays_short() -> (
    None
):
    from functions.normalize import MAX_TITLE_CHARS, cap_title
    from infra.embed import EMBED_TEXT_CHARS, embedding_text

    title = "word " * 200_000

    capped = cap_title(title)

    assert len(capped) <= MAX_TITLE_CHARS
    assert capped.endswith("word…")
    assert len(embedding_text(title, "body " * 1000)) <= 2 * EMBED_TEXT_CHARS + 2
    assert cap_title("short headline") == "short headline"
