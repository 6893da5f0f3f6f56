"""An article stays one item through feed churn, run after run."""

from __future__ import annotations

import base64
from datetime import timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import func, select

from functions.collect import CollectReport, collect
from functions.models import Item, Source
from infra import db
from infra.config import get_settings
from infra.store import Store, utcnow
from tests.feedserver import FeedServer, Reply, item, rss

pytestmark = pytest.mark.usefixtures("fast_fetch")

NOW = utcnow()
HOUR_AGO = format_datetime(NOW - timedelta(hours=1))


class Feed:
    """One source on the test server whose content changes between runs."""

    def __init__(self, server: FeedServer, store: Store, name: str = "feed") -> None:
        self.server = server
        self.store = store
        self.source = Source(name, server.url(name), max_age_hours=10**6)

    async def run(self, *items: str, **rss_args: str) -> CollectReport:
        self.server.route(self.source.name, rss(*items, **rss_args).encode())
        return await collect([self.source], self.store, get_settings())

    def items(self) -> list[Item]:
        return self.store.list_items(source=self.source.name)


@pytest.fixture
def feed(feed_server: FeedServer, store: Store) -> Feed:
    return Feed(feed_server, store)


STORY = "Metro line extension opens to passengers"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(
            item(STORY, link="https://example.test/metro", guid="build-1-a8f3"),
            item(STORY, link="https://example.test/metro", guid="build-2-77c0"),
            id="guid-regenerated-by-a-site-build",
        ),
        pytest.param(
            item(STORY, link="http://example.test/metro", guid="http://example.test/m"),
            item(
                STORY, link="https://example.test/metro", guid="https://example.test/m"
            ),
            id="http-to-https",
        ),
        pytest.param(
            item(STORY, link="https://example.test/metro", guid="m-1"),
            item(
                STORY,
                link="https://EXAMPLE.test/metro?utm_source=rss&utm_medium=feed"
                "&fbclid=IwAR0&gclid=Cj0K&spm=a2c4.b5#comments",
                guid="m-1",
            ),
            id="tracking-parameters-case-and-fragment",
        ),
        pytest.param(
            item(STORY, link="https://example.test/metro", guid="m-1"),
            item(STORY, link="https://example.test/2025/metro-line", guid="m-1"),
            id="second-url-same-guid",
        ),
        pytest.param(
            item(STORY, link="https://example.test/metro", date=HOUR_AGO),
            item(STORY, link="https://m.example.test/metro.amp", date=HOUR_AGO),
            id="second-url-same-headline",
        ),
    ],
)
async def test_the_same_article_after_churn_is_never_new_again(
    feed: Feed, before: str, after: str
) -> None:
    first = await feed.run(before)
    second = await feed.run(after)

    assert (first.items_new, second.items_new) == (1, 0)
    assert len(feed.items()) == 1


async def test_a_retitled_headline_updates_the_item_in_place(feed: Feed) -> None:
    await feed.run(item("Minister to visit port", link="https://example.test/v"))
    second = await feed.run(
        item("Minister visits port, promises dredging", link="https://example.test/v")
    )

    [stored] = feed.items()
    assert second.items_new == 0
    assert second.sources[0].updated == 1
    assert stored.title == "Minister visits port, promises dredging"


async def test_an_old_item_re_entering_the_window_is_not_announced(
    feed: Feed,
) -> None:
    old = item("Harbour tunnel toll review", link="https://example.test/old")
    fresh = item("Library opens new wing", link="https://example.test/fresh")

    await feed.run(old, fresh)
    await feed.run(fresh)
    third = await feed.run(old, fresh)

    assert third.items_new == 0
    assert len(feed.items()) == 2


async def test_a_headline_reused_a_week_later_is_a_new_item(feed: Feed) -> None:
    title = "Morning briefing: what to watch in the city today"
    week_ago = format_datetime(NOW - timedelta(days=7))

    first = await feed.run(item(title, link="https://example.test/b/1", date=week_ago))
    second = await feed.run(item(title, link="https://example.test/b/2", date=HOUR_AGO))

    assert (first.items_new, second.items_new) == (1, 1)


async def test_a_real_date_replaces_an_estimated_one(feed: Feed) -> None:
    await feed.run(item(STORY, link="https://example.test/metro"))
    await feed.run(item(STORY, link="https://example.test/metro", date=HOUR_AGO))

    [stored] = feed.items()
    assert not stored.published_estimated
    assert stored.published == (NOW - timedelta(hours=1)).replace(microsecond=0)


def google_link(target: str) -> str:
    """A Google News article link in the older format that embeds the URL."""
    raw = b"\x08\x13\x22" + bytes([len(target)]) + target.encode() + b"\xd2\x01\x00"
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"https://news.google.com/rss/articles/{token}?oc=5"


async def test_a_google_news_link_becomes_the_publishers_item(
    feed_server: FeedServer, store: Store
) -> None:
    publisher = Feed(feed_server, store, "publisher")
    google = Feed(feed_server, store, "google-news")
    await publisher.run(item(STORY, link="https://example.test/metro"))

    report = await google.run(
        item(
            f"{STORY} - Example Daily",
            link=google_link("https://example.test/metro?utm_source=gn"),
            guid="CBMiXWh0dHBz",
            extra='<source url="https://example.test">Example Daily</source>',
        )
    )

    assert report.items_new == 0
    assert [i.source for i in store.list_items()] == ["publisher"]


async def test_an_opaque_google_news_link_is_known_by_title_and_source(
    feed: Feed,
) -> None:
    opaque = "https://news.google.com/rss/articles/CBMiK0FVX3lxTE1hYmNkZWZn?oc=5"
    source = '<source url="https://example.test">Example Daily</source>'

    first = await feed.run(
        item(f"{STORY} - Example Daily", link=opaque, guid="g-1", extra=source)
    )
    second = await feed.run(
        item(
            f"{STORY} - Example Daily", link=opaque + "&hl=en", guid="g-2", extra=source
        )
    )

    [stored] = feed.items()
    assert (first.items_new, second.items_new) == (1, 0)
    assert stored.title == STORY
    assert stored.url.startswith("https://news.google.com/rss/articles/CBMiK0FVX3lxTE")


async def test_relative_links_resolve_against_the_feeds_final_url(
    feed_server: FeedServer, store: Store
) -> None:
    feed_server.route(
        "feeds/world.xml", rss(item(STORY, link="../story/1.html")).encode()
    )
    moved = feed_server.route(
        "world", Reply(status=301, headers={"Location": "/feeds/world.xml"})
    )

    await collect([Source("world", moved)], store, get_settings())

    [stored] = store.list_items()
    assert stored.url == feed_server.url("story/1.html")


async def test_a_very_long_url_is_still_one_identity(feed: Feed) -> None:
    link = "https://example.test/story?" + "&".join(f"k{n}=v{n}" for n in range(80))

    await feed.run(item(STORY, link=link))
    second = await feed.run(item(STORY, link=link + "&utm_campaign=x"))

    with feed.store.begin() as conn:
        longest = conn.execute(
            select(func.max(func.length(db.item_keys.c.key)))
        ).scalar()
    assert len(link) > 300
    assert longest <= 300
    assert second.items_new == 0
