"""Fetching against a real HTTP server on 127.0.0.1: failures, limits, politeness."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from datetime import timedelta

import pytest

from functions.collect import collect, policy_from
from functions.fetch import FetchPolicy, fetch_all, parse_retry_after
from functions.models import Source
from infra.config import get_settings
from infra.store import Store, utcnow
from tests.feedserver import FeedServer, Reply, item, rss

pytestmark = pytest.mark.usefixtures("fast_fetch")

FEED = rss(
    item("Harbour ferry timetable changes", link="https://example.test/a/1"),
    item("Night market reopens after repairs", link="https://example.test/a/2"),
).encode()


def policy(**changes: float) -> FetchPolicy:
    base = policy_from(get_settings())
    for name, value in changes.items():
        setattr(base, name, value)
    return base


async def fetch_one(url: str, **changes: float):  # type: ignore[no-untyped-def]
    [outcome] = await fetch_all([Source("feed", url)], policy(**changes))
    return outcome


@pytest.mark.parametrize(
    ("status", "reason"),
    [pytest.param(404, "not found", id="404"), pytest.param(410, "gone", id="410")],
)
async def test_missing_feed_fails_with_its_status_and_is_not_retried(
    feed_server: FeedServer, status: int, reason: str
) -> None:
    url = feed_server.route("feed", Reply(b"nothing here", status=status))

    outcome = await fetch_one(url)

    assert outcome.status == "failed"
    assert outcome.error == f"HTTP {status} ({reason})"
    assert feed_server.hit_count("feed") == 1


async def test_server_errors_then_success_are_retried(feed_server: FeedServer) -> None:
    url = feed_server.route("feed", Reply(status=503), Reply(status=502), Reply(FEED))

    outcome = await fetch_one(url)

    assert outcome.status == "ok"
    assert outcome.attempts == 3
    assert outcome.body == FEED


async def test_server_error_that_persists_fails_after_the_retries(
    feed_server: FeedServer,
) -> None:
    url = feed_server.route("feed", Reply(b"oops", status=500))

    outcome = await fetch_one(url, retries=2)

    assert outcome.status == "failed"
    assert outcome.error == "HTTP 500"
    assert feed_server.hit_count("feed") == 3


async def test_a_source_that_never_answers_times_out_with_a_reason(
    feed_server: FeedServer,
) -> None:
    url = feed_server.route("feed", Reply(FEED, delay_s=5))

    outcome = await fetch_one(url, timeout_s=0.2, retries=1)

    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.startswith(
        "timed out after 0.2s"
    )
    assert feed_server.hit_count("feed") == 2


async def test_a_body_dripped_byte_by_byte_still_times_out(
    feed_server: FeedServer,
) -> None:
    # Each read arrives well within the timeout; the whole answer does not.
    url = feed_server.route("feed", Reply(FEED, drip_s=0.05, drip_chunk=8))

    outcome = await fetch_one(url, timeout_s=0.3, retries=0)

    assert outcome.status == "failed"
    assert outcome.error == "timed out after 0.3s"


async def test_a_redirect_loop_fails_with_a_reason(feed_server: FeedServer) -> None:
    url = feed_server.route("loop", Reply(status=302, headers={"Location": "/loop"}))

    outcome = await fetch_one(url)

    assert outcome.status == "failed"
    assert outcome.error == "redirect loop (more than 5 redirects)"
    assert feed_server.hit_count("loop") == 6


async def test_a_redirect_to_another_scheme_fails_without_retrying(
    feed_server: FeedServer,
) -> None:
    url = feed_server.route(
        "feed", Reply(status=301, headers={"Location": "ftp://127.0.0.1/feed"})
    )

    outcome = await fetch_one(url)

    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.startswith("unsupported URL")
    assert feed_server.hit_count("feed") == 1


async def test_a_redirect_is_followed_and_the_final_url_kept(
    feed_server: FeedServer,
) -> None:
    feed_server.route("new/feed.xml", FEED)
    url = feed_server.route(
        "old", Reply(status=301, headers={"Location": "/new/feed.xml"})
    )

    outcome = await fetch_one(url)

    assert outcome.status == "ok"
    assert outcome.final_url == feed_server.url("new/feed.xml")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_size_cap_is_refused(
    feed_server: FeedServer, declared: bool
) -> None:
    big = rss(item("x" * 5000, link="https://example.test/big")).encode()
    url = feed_server.route("feed", Reply(big, content_length=declared))

    outcome = await fetch_one(url, max_bytes=2000)

    assert outcome.status == "failed"
    assert outcome.error is not None and "over the 2000-byte cap" in outcome.error
    assert feed_server.hit_count("feed") == 1


async def test_a_gzipped_feed_is_inflated(feed_server: FeedServer) -> None:
    url = feed_server.route("feed", Reply(FEED, gzip=True))

    outcome = await fetch_one(url)

    assert outcome.status == "ok"
    assert outcome.body == FEED
    assert outcome.bytes_received < len(FEED)
    assert feed_server.hits["/feed"][0].headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    "wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib-wrapped", "raw"]
)
async def test_a_deflate_body_is_inflated(feed_server: FeedServer, wbits: int) -> None:
    squeezer = zlib.compressobj(wbits=wbits)
    deflated = squeezer.compress(FEED) + squeezer.flush()
    url = feed_server.route(
        "feed", Reply(deflated, headers={"Content-Encoding": "deflate"})
    )

    outcome = await fetch_one(url)

    assert outcome.body == FEED


async def test_a_gzip_bomb_is_refused_with_bounded_memory(
    feed_server: FeedServer,
) -> None:
    bomb = gzip.compress(b"<rss>" + b" " * 50_000_000, compresslevel=9)
    url = feed_server.route("feed", Reply(bomb, headers={"Content-Encoding": "gzip"}))

    tracemalloc.start()
    try:
        outcome = await fetch_one(url, max_bytes=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(bomb) < 1_000_000
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith("body inflates past the 1000000-byte cap")
    assert peak < 8_000_000


async def test_an_unknown_content_encoding_is_refused(feed_server: FeedServer) -> None:
    url = feed_server.route("feed", Reply(FEED, headers={"Content-Encoding": "br"}))

    outcome = await fetch_one(url)

    assert outcome.status == "failed"
    assert outcome.error == "unsupported Content-Encoding: br"


async def test_429_waits_as_long_as_retry_after_asks(feed_server: FeedServer) -> None:
    url = feed_server.route(
        "feed",
        Reply(b"slow down", status=429, headers={"Retry-After": "1"}),
        Reply(FEED),
    )

    outcome = await fetch_one(url)

    first, second = feed_server.hits["/feed"]
    assert outcome.status == "ok"
    # Backoff alone would retry within 0.05 s; Retry-After asked for one second.
    assert second.at - first.at >= 1.0


async def test_429_asking_for_a_long_wait_pauses_the_source_until_then(
    feed_server: FeedServer, store: Store
) -> None:
    url = feed_server.route(
        "feed", Reply(b"come back later", status=429, headers={"Retry-After": "7200"})
    )
    source = Source("feed", url)
    now = utcnow()

    first = await collect([source], store, get_settings(), now=now)
    second = await collect(
        [source], store, get_settings(), now=now + timedelta(minutes=30)
    )

    assert first.sources[0].status == "blocked"
    assert first.sources[0].error == "rate limited (HTTP 429), asked to wait 7200s"
    assert second.sources[0].status == "backoff"
    assert feed_server.hit_count("feed") == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None


CHALLENGE = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
    b"<body><div id='challenge-platform'>Checking your browser</div></body></html>"
)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        pytest.param(403, CHALLENGE, "blocked: HTTP 403 (anti-bot page)", id="403"),
        pytest.param(
            403, FEED, "blocked: HTTP 403 (access refused)", id="403-with-a-feed"
        ),
        pytest.param(200, CHALLENGE, "blocked: anti-bot challenge page", id="200"),
        pytest.param(503, CHALLENGE, "blocked: HTTP 503 (anti-bot page)", id="503"),
    ],
)
async def test_an_anti_bot_answer_is_blocked_and_never_parsed(
    feed_server: FeedServer, store: Store, status: int, body: bytes, error: str
) -> None:
    content_type = "application/rss+xml" if body == FEED else "text/html"
    url = feed_server.route(
        "feed", Reply(body, status=status, content_type=content_type)
    )

    report = await collect([Source("feed", url)], store, get_settings())

    [result] = report.sources
    assert (result.status, result.error) == ("blocked", error)
    assert result.fetched == 0
    assert store.count_items() == 0
    assert feed_server.hit_count("feed") == 1


async def test_an_unchanged_feed_costs_one_conditional_request(
    feed_server: FeedServer, store: Store
) -> None:
    url = feed_server.route(
        "feed",
        Reply(FEED, etag='"v1"', last_modified="Fri, 14 Nov 2025 08:00:00 GMT"),
    )
    source = Source("feed", url, max_age_hours=10**6)

    first = await collect([source], store, get_settings())
    second = await collect([source], store, get_settings())

    assert [first.sources[0].status, second.sources[0].status] == [
        "ok",
        "not_modified",
    ]
    assert (first.items_new, second.items_new) == (2, 0)
    assert feed_server.conditional_count("feed") == 1
    assert feed_server.not_modified["/feed"] == 1
    assert feed_server.hits["/feed"][1].headers["if-none-match"] == '"v1"'
    assert second.sources[0].bytes == 0


async def test_a_hung_source_does_not_hold_the_others_past_the_deadline(
    feed_server: FeedServer,
) -> None:
    urls = [feed_server.route(f"fast{i}", FEED) for i in range(3)]
    hung = feed_server.route("hung", Reply(FEED, delay_s=30))
    sources = [Source(f"fast{i}", u) for i, u in enumerate(urls)]
    sources.append(Source("hung", hung))

    outcomes = await fetch_all(sources, policy(timeout_s=20, deadline_s=0.5))

    assert [o.status for o in outcomes] == ["ok", "ok", "ok", "failed"]
    assert outcomes[-1].error == "run deadline of 0.5s reached"


async def test_an_empty_source_list_fetches_nothing() -> None:
    assert await fetch_all([], policy()) == []


async def test_every_request_names_the_product_in_its_user_agent(
    feed_server: FeedServer,
) -> None:
    url = feed_server.route("feed", FEED)

    await fetch_one(url)

    assert (
        feed_server.hits["/feed"][0].headers["user-agent"].startswith("ChinaToWatch/")
    )


async def test_a_missing_local_file_fails_with_its_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    outcome = await fetch_one(str(tmp_path / "nope.xml"))

    assert outcome.status == "failed"
    assert (
        outcome.error
        == f"cannot read {tmp_path / 'nope.xml'}: No such file or directory"
    )
