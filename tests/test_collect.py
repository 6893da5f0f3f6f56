"""The collect stage: source health over many runs, sources files, and the CLI."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from functions.cli import _register, cli
from functions.collect import PAUSE_AFTER, collect
from functions.models import Source
from functions.sources import SourcesError, load_sources
from infra.config import get_settings
from infra.store import Store, utcnow
from tests.feedserver import FeedServer, Reply, item, rss

pytestmark = pytest.mark.usefixtures("fast_fetch")

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
FEED = rss(item("Tram fares frozen for a year", link="https://example.test/t")).encode()


async def test_one_broken_source_never_stops_the_others(
    feed_server: FeedServer, store: Store
) -> None:
    sources = [
        Source("good", feed_server.route("good", FEED), max_age_hours=10**6),
        Source("missing", feed_server.route("missing", Reply(status=404))),
        Source("page", feed_server.route("page", Reply(b"<html>hi</html>"))),
        Source("nowhere", str(Path("no/such/feed.xml").resolve())),
    ]

    report = await collect(sources, store, get_settings())

    assert [(s.name, s.status) for s in report.sources] == [
        ("good", "ok"),
        ("missing", "failed"),
        ("page", "empty"),
        ("nowhere", "failed"),
    ]
    assert report.items_new == 1
    assert report.as_dict()["sources_failed"] == 3


async def test_a_failing_source_backs_off_then_is_paused_with_a_notice(
    feed_server: FeedServer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    url = feed_server.route("flaky", Reply(b"down", status=500))
    source = Source("flaky", url)
    settings = get_settings()
    settings.fetch_retries = 0
    now = utcnow()
    statuses: list[str] = []
    waits: list[timedelta | None] = []

    while statuses.count("failed") < PAUSE_AFTER:
        report = await collect([source], store, settings, now=now)
        statuses.append(report.sources[0].status)
        until = store.get_source_state("flaky")["paused_until"]
        waits.append(until - now if until else None)
        if until:
            probe = await collect(
                [source], store, settings, now=now + timedelta(minutes=1)
            )
            statuses.append(probe.sources[0].status)
        now = (until or now) + timedelta(minutes=1)

    hours = [None if w is None else w / timedelta(hours=1) for w in waits]
    assert hours == [None, None, 1, 2, 4, 8, 16, 24, 24, 7 * 24]
    assert statuses[:4] == ["failed", "failed", "failed", "backoff"]
    assert statuses[-2:] == ["failed", "paused"]
    assert feed_server.hit_count("flaky") == PAUSE_AFTER
    assert report.sources[0].error == (
        f"HTTP 500; paused for 7 days after {PAUSE_AFTER} failures in a row"
    )
    assert probe.sources[0].error is not None
    assert probe.sources[0].error.startswith("paused until ")
    assert any(
        r.levelno == logging.WARNING and "paused" in r.getMessage()
        for r in caplog.records
    )

    feed_server.route("flaky", FEED)
    recovered = await collect([source], store, settings, now=now + timedelta(days=8))
    assert recovered.sources[0].status in ("ok", "stale")
    assert store.get_source_state("flaky")["consecutive_failures"] == 0


async def test_a_feed_with_only_old_items_is_reported_stale(
    feed_server: FeedServer, store: Store
) -> None:
    ten_days_ago = format_datetime(utcnow() - timedelta(days=10))
    old = rss(item("Old news", link="https://example.test/o", date=ten_days_ago))
    url = feed_server.route("feed", Reply(old.encode(), etag='"same"'))
    source = Source("feed", url, max_age_hours=72)

    first = await collect([source], store, get_settings())
    second = await collect([source], store, get_settings())

    assert first.sources[0].status == "stale"
    assert first.sources[0].error == "newest item is 240h old (limit 72h)"
    assert second.sources[0].status == "stale"
    assert feed_server.not_modified["/feed"] == 1
    assert store.get_source_state("feed")["consecutive_failures"] == 0


def test_a_directory_of_feed_files_is_one_source_per_file() -> None:
    sources = load_sources(FIXTURES)

    assert [(s.name, s.lang) for s in sources] == [
        ("en-bay-courier", "auto"),
        ("en-harbour-times", "auto"),
        ("zh-city-daily", "zh"),
    ]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        pytest.param(
            'name = "a"\nurl = "https://x.test/"\ntimezone = "Beijing"',
            "unknown `timezone` 'Beijing'",
            id="timezone",
        ),
        pytest.param(
            'name = "a"\nurl = "https://x.test/"\nweight = "high"',
            "`weight` must be int or float, not 'high'",
            id="type",
        ),
        pytest.param(
            'name = "a"\nurl = "https://x.test/"\nlang = "fr"',
            "`lang` must be one of en, zh, auto",
            id="lang",
        ),
        pytest.param(
            'name = "a"\nurl = "https://x.test/"\nownership = "state"',
            "`ownership` must be one of",
            id="ownership",
        ),
        pytest.param('name = "a"', "needs `name` and `url`", id="no-url"),
    ],
)
def test_a_bad_sources_file_says_what_to_fix(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = tmp_path / "sources.toml"
    path.write_text("[[source]]\n" + toml + "\n", encoding="utf-8")

    with pytest.raises(SourcesError, match="source") as caught:
        load_sources(path)

    assert message in str(caught.value)


@pytest.fixture
def runner() -> Iterator[CliRunner]:
    """A CLI runner; the root logger is put back after the CLI reconfigures it."""
    _register()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield CliRunner()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_digest_fetch_json_reads_a_directory(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["fetch", "--sources", str(FIXTURES), "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["items_new"] == 7
    assert [(s["name"], s["fetched"], s["new"]) for s in report["sources"]] == [
        ("en-bay-courier", 2, 2),
        ("en-harbour-times", 3, 3),
        ("zh-city-daily", 2, 2),
    ]
    for source in report["sources"]:
        # The fixtures are a dated snapshot, so each answers but is stale.
        assert source["status"] == "stale"
        assert source["error"].startswith("newest item is ")
    assert report["sources"][2]["url"] == str(FIXTURES / "zh-city-daily.xml")


def write_sources(tmp_path: Path, server: FeedServer) -> Path:
    """A sources.toml whose feeds are the fixtures, served over HTTP."""
    entries = []
    for path in sorted(FIXTURES.glob("*.xml")):
        url = server.route(
            path.name, Reply(path.read_bytes(), etag=f'"{path.stem}-v1"')
        )
        zone = "Asia/Shanghai" if path.stem.startswith("zh-") else "UTC"
        lang = "zh" if path.stem.startswith("zh-") else "en"
        entries.append(
            f'[[source]]\nname = "{path.stem}"\nurl = "{url}"\nlang = "{lang}"\n'
            f'timezone = "{zone}"\nownership = "independent"\n'
            "max_age_hours = 1000000\n"
        )
    target = tmp_path / "sources.toml"
    target.write_text("\n".join(entries), encoding="utf-8")
    return target


def test_digest_fetch_table_says_not_modified_the_second_time(
    runner: CliRunner, feed_server: FeedServer, tmp_path: Path
) -> None:
    sources = write_sources(tmp_path, feed_server)

    first = runner.invoke(cli, ["fetch", "--sources", str(sources)])
    second = runner.invoke(cli, ["fetch", "--sources", str(sources), "--json"])
    third = runner.invoke(cli, ["fetch", "--sources", str(sources)])

    assert first.exit_code == 0, first.output
    assert "7 new items from 3 sources (0 failed)" in first.stdout
    statuses = [s["status"] for s in json.loads(second.stdout)["sources"]]
    assert statuses == ["not_modified"] * 3
    assert third.stdout.count("not_modified") == 3
    assert "0 new items from 3 sources" in third.stdout


def test_digest_items_json_lists_what_was_stored(
    runner: CliRunner, feed_server: FeedServer, tmp_path: Path
) -> None:
    sources = write_sources(tmp_path, feed_server)
    runner.invoke(cli, ["fetch", "--sources", str(sources), "--json"])

    result = runner.invoke(cli, ["items", "--json", "--source", "zh-city-daily"])

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["title"] for r in rows] == [
        "过海渡轮下月起增加深夜航班",
        "市图书馆屋顶阅读花园开放，镕炉旧址改建",
    ]
    assert rows[0]["published"] == "2025-11-14T07:20:00+00:00"
    assert rows[0]["lang"] == "zh"
    assert rows[0]["url"] == "https://city-daily.example/2025/1114/ferry.html"
    assert rows[0]["text"].startswith("渡轮公司表示，下月起午夜后将增开三班航班。")
    assert set(rows[0]) >= {"id", "source", "url", "title", "text", "lang"}

    since = runner.invoke(
        cli, ["items", "--json", "--since", "2025-11-14T14:00:00+08:00"]
    )
    titles = [json.loads(line)["title"] for line in since.stdout.splitlines()]
    assert titles == [
        "过海渡轮下月起增加深夜航班",
        "Cross-harbour ferry adds late-night sailings",
        "Cross-harbour ferry adds late-night sailings",
    ]


def test_digest_run_once_json_reports_every_stage(
    runner: CliRunner, feed_server: FeedServer, tmp_path: Path
) -> None:
    sources = write_sources(tmp_path, feed_server)

    result = runner.invoke(cli, ["run", "--once", "--json", "--sources", str(sources)])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "ok"
    assert report["items_new"] == 7
    assert [s["status"] for s in report["sources"]] == ["ok"] * 3
    assert report["stages"]["cluster"]["items_in"] == 7
    assert report["stages"]["cluster"]["removed"]["exact"] == 1
    assert report["stages"]["cluster"]["stories"] == 7 - sum(
        report["stages"]["cluster"]["removed"].values()
    )
    assert report["deliveries"]["channel"] == "console"
    assert report["deliveries"]["messages_sent"] == 1
    assert Path(report["preview"]).is_file()


def test_digest_fetch_with_a_bad_sources_file_exits_with_the_reason(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "sources.toml"
    path.write_text('[[source]]\nname = "a"\n', encoding="utf-8")

    result = runner.invoke(cli, ["fetch", "--sources", str(path)])

    assert result.exit_code == 1
    assert "every [[source]] needs `name` and `url`" in result.stderr
