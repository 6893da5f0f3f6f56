"""Bad feeds served on 127.0.0.1: each gets a clear message and loses nothing.

Every feed text here was written for these tests.
"""

from __future__ import annotations

import codecs
import tracemalloc

import pytest

from functions.collect import SourceResult, collect
from functions.models import Item, Source
from infra.config import get_settings
from infra.store import Store
from tests.feedserver import FeedServer, Reply, item, rss

pytestmark = pytest.mark.usefixtures("fast_fetch")

GB_TITLE = "朱镕基时代的国企改革：市政府宣布新的公交线路下月开通"
HK_TITLE = "香港政府今日表示新的渡輪航線將於下月開通，啲乘客都好開心"
EN_TITLE = "Café owners welcome the “new” ferry timetable"


async def collect_feed(
    server: FeedServer,
    store: Store,
    body: bytes,
    *,
    content_type: str | None = "application/rss+xml",
    source: Source | None = None,
) -> tuple[SourceResult, list[Item]]:
    url = server.route("feed", Reply(body, content_type=content_type))
    source = source or Source("feed", url, lang="auto", max_age_hours=10**6)
    report = await collect([source], store, get_settings())
    return report.sources[0], store.list_items(source=source.name)


def one_item_feed(title: str, *, encoding: str = "utf-8", decl: bool = True) -> str:
    return rss(
        item(title, link="https://example.test/news/1", description=title),
        encoding=encoding,
        declaration=decl,
    )


@pytest.mark.parametrize(
    ("body", "content_type", "title"),
    [
        pytest.param(
            one_item_feed(GB_TITLE, encoding="gb2312").encode("gbk"),
            "application/xml",
            GB_TITLE,
            id="gbk-bytes-declared-gb2312-with-a-char-outside-gb2312",
        ),
        pytest.param(
            one_item_feed(GB_TITLE, encoding="gb2312").encode("gbk"),
            "text/xml; charset=utf-8",
            GB_TITLE,
            id="http-says-utf8-bytes-are-gbk",
        ),
        pytest.param(
            one_item_feed(EN_TITLE).encode("utf-8"),
            "text/xml; charset=iso-8859-1",
            EN_TITLE,
            id="http-says-latin1-bytes-are-utf8",
        ),
        pytest.param(
            one_item_feed(EN_TITLE).encode("cp1252"),
            "text/xml; charset=utf-8",
            EN_TITLE,
            id="http-says-utf8-bytes-are-cp1252",
        ),
        pytest.param(
            one_item_feed(HK_TITLE, encoding="big5").encode("big5hkscs"),
            "text/xml; charset=gbk",
            HK_TITLE,
            id="http-says-gbk-bytes-are-big5",
        ),
        pytest.param(
            one_item_feed(HK_TITLE, encoding="big5").encode("big5hkscs"),
            "application/rss+xml",
            HK_TITLE,
            id="big5-with-a-hong-kong-char",
        ),
        pytest.param(
            one_item_feed(GB_TITLE, decl=False).encode("gbk"),
            "application/rss+xml",
            GB_TITLE,
            id="no-charset-anywhere-gbk-bytes",
        ),
        pytest.param(
            codecs.BOM_UTF8
            + one_item_feed(GB_TITLE, encoding="gb2312").encode("utf-8"),
            "text/xml; charset=gbk",
            GB_TITLE,
            id="utf8-bom-beats-wrong-declarations",
        ),
        pytest.param(
            one_item_feed(HK_TITLE, encoding="utf-16").encode("utf-16"),
            "application/xml",
            HK_TITLE,
            id="utf16-with-bom",
        ),
    ],
)
async def test_a_wrong_or_missing_charset_still_decodes_right(
    feed_server: FeedServer,
    store: Store,
    body: bytes,
    content_type: str,
    title: str,
) -> None:
    result, items = await collect_feed(
        feed_server, store, body, content_type=content_type
    )

    assert result.status == "ok"
    assert [i.title for i in items] == [title]
    assert items[0].text == title
    assert items[0].lang == ("en" if title == EN_TITLE else "zh")


async def test_a_stray_byte_in_a_gbk_feed_costs_one_character(
    feed_server: FeedServer, store: Store
) -> None:
    feed = rss(
        item(GB_TITLE, link="https://example.test/1", description="票价上涨STRAY了"),
        encoding="gb2312",
    )
    body = feed.encode("gbk").replace(b"STRAY", b"\xff")

    result, items = await collect_feed(feed_server, store, body)

    assert result.status == "ok"
    assert "decoded as gb18030+replace" in result.warnings
    assert (items[0].title, items[0].text) == (GB_TITLE, "票价上涨\ufffd了")


async def test_undefined_html_entities_are_decoded(
    feed_server: FeedServer, store: Store
) -> None:
    body = rss(
        item(
            "Tea&nbsp;prices rise&mdash;again&hellip;",
            link="https://example.test/tea",
            description="&lt;p&gt;&copy; Tea Board&amp;nbsp;&lt;/p&gt; &bogus; stays",
        )
    ).encode()

    result, items = await collect_feed(feed_server, store, body)

    assert result.status == "ok"
    assert items[0].title == "Tea prices rise—again…"
    # feedparser drops the ";" of an unknown entity in HTML; the words stay.
    assert items[0].text == "© Tea Board &bogus stays"


async def test_a_billion_laughs_bomb_finishes_with_bounded_memory(
    feed_server: FeedServer, store: Store
) -> None:
    levels = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)
    ]
    body = (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n' + "\n".join(levels) + "\n]>\n"
    ) + rss(
        item("Laughs &lol9; here", link="https://example.test/lol"), declaration=False
    )

    tracemalloc.start()
    try:
        result, items = await collect_feed(feed_server, store, body.encode())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.status == "ok"
    assert "removed a DOCTYPE with entity declarations" in result.warnings
    assert items[0].title == "Laughs &lol9; here"
    assert peak < 20_000_000


async def test_an_external_entity_is_never_fetched_or_read(
    feed_server: FeedServer, store: Store
) -> None:
    secret = feed_server.route("secret", b"do not read me")
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{secret}">'
        '<!ENTITY file SYSTEM "file:///etc/hostname">]>\n'
    ) + rss(
        item("Outside &xxe; and &file;", link="https://example.test/x"),
        declaration=False,
    )

    result, items = await collect_feed(feed_server, store, body.encode())

    assert result.status == "ok"
    assert items[0].title == "Outside &xxe; and &file;"
    assert feed_server.hit_count("secret") == 0


async def test_an_html_page_instead_of_a_feed_is_reported_not_parsed(
    feed_server: FeedServer, store: Store
) -> None:
    page = (
        b"<!DOCTYPE html><html><head><title>Welcome</title></head><body>"
        b"<h1>Our news</h1><a href='/story'>A story</a></body></html>"
    )

    result, items = await collect_feed(
        feed_server, store, page, content_type="text/html"
    )

    assert (result.status, result.error) == ("empty", "an HTML page, not a feed")
    assert items == []
    assert result.consecutive_failures == 1


async def test_truncated_xml_keeps_the_items_before_the_cut(
    feed_server: FeedServer, store: Store
) -> None:
    whole = rss(
        item("First complete story about rail", link="https://example.test/1"),
        item("Second complete story about ports", link="https://example.test/2"),
        item("Third story cut in the middle", link="https://example.test/3"),
    ).encode()
    cut = whole[: whole.index(b"Third") + 10]

    result, items = await collect_feed(feed_server, store, cut)

    assert result.status == "ok"
    assert {i.title for i in items} >= {
        "First complete story about rail",
        "Second complete story about ports",
    }
    assert any(w.startswith("malformed, read leniently") for w in result.warnings)


async def test_an_empty_body_is_reported(feed_server: FeedServer, store: Store) -> None:
    result, _ = await collect_feed(feed_server, store, b"")

    assert (result.status, result.error) == ("empty", "empty body")


async def test_a_valid_feed_without_items_is_reported(
    feed_server: FeedServer, store: Store
) -> None:
    result, _ = await collect_feed(feed_server, store, rss().encode())

    assert (result.status, result.error) == (
        "empty",
        "a valid rss20 feed with no items",
    )


async def test_items_without_links_or_dates_are_stored_and_not_new_again(
    feed_server: FeedServer, store: Store
) -> None:
    body = rss(
        item("Typhoon signal lowered", description="Ferries resume."),
        item(None, description="A text-only bulletin about the weather."),
    ).encode()

    first, stored = await collect_feed(feed_server, store, body)
    second, again = await collect_feed(feed_server, store, body)

    assert (first.new, second.new, second.fetched) == (2, 0, 2)
    assert sorted(i.title for i in stored) == [
        "A text-only bulletin about the weather.",
        "Typhoon signal lowered",
    ]
    assert all(i.published_estimated for i in stored)
    assert {i.id: i.published for i in again} == {i.id: i.published for i in stored}


async def test_duplicate_guids_in_one_feed_lose_no_item(
    feed_server: FeedServer, store: Store
) -> None:
    body = rss(
        item("Port reopens after storm", link="https://example.test/p", guid="42"),
        item("Budget debate starts today", link="https://example.test/b", guid="42"),
        item("Museum adds night hours", link="https://example.test/m", guid="42"),
    ).encode()

    result, items = await collect_feed(feed_server, store, body)

    assert (result.fetched, result.new) == (3, 3)
    assert len(items) == 3
    assert any("guid key(s) shared by different items" in w for w in result.warnings)


async def test_the_same_item_twice_in_one_feed_is_one_item(
    feed_server: FeedServer, store: Store
) -> None:
    story = item(
        "Bridge closed for inspection tonight",
        link="https://example.test/bridge?utm_source=rss",
        guid="b-1",
    )
    twin = item(
        "Bridge closed for inspection tonight",
        link="https://example.test/bridge",
        guid="b-1",
    )

    result, items = await collect_feed(feed_server, store, rss(story, twin).encode())

    assert (result.fetched, result.new) == (1, 1)
    assert [i.url for i in items] == ["https://example.test/bridge"]


async def test_control_characters_are_dropped_and_the_item_kept(
    feed_server: FeedServer, store: Store
) -> None:
    body = rss(
        item("Vertical\x0btab and form\x0cfeed", link="https://example.test/c")
    ).encode()

    result, items = await collect_feed(feed_server, store, body)

    assert result.status == "ok"
    assert items[0].title == "Verticaltab and formfeed"


async def test_an_entry_that_breaks_normalizing_costs_only_itself(
    feed_server: FeedServer, store: Store
) -> None:
    body = rss(
        item("Broken markup &lt;![foo in a title", link="https://example.test/x"),
        item("A fine story about trams", link="https://example.test/y"),
        item("Year one", link="https://example.test/z", date="0001-01-01T00:00:00"),
    ).encode()
    source = Source(
        "feed",
        feed_server.url("feed"),
        lang="auto",
        timezone="Asia/Shanghai",
        max_age_hours=10**6,
    )

    result, items = await collect_feed(feed_server, store, body, source=source)

    assert result.status == "ok"
    assert result.fetched == 3
    assert {i.title for i in items} >= {"A fine story about trams", "Year one"}
