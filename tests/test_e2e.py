"""The whole product, end to end, against every vendor fake at once.

`digest run` (the real command) collects the shipped sample feeds from
127.0.0.1, clusters them on the fake Upstash index, has the fake DeepSeek
write each summary and the fake DashScope (Qwen) check it, ranks for three
readers and delivers to the fake Telegram Bot API. A tap on a button goes
through the real webhook app. A scheduled job that fails reports to the
fake Sentry ingest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from starlette.testclient import TestClient
from telegram.error import InvalidToken

from bot.feedback import reader_feedback
from bot.ledger import DeliveryLedger
from bot.render import clean
from bot.webhook import SECRET_HEADER, WEBHOOK_PATH, create_app
from functions.cli import _register, cli
from functions.demo import SAMPLES, serve_samples
from functions.jobs import JobFailed, digest_job
from functions.models import Summary
from functions.run import RunOptions, run_once
from functions.summarize import summary_from_dict
from functions.textnorm import is_cjk
from functions.topics import fold
from infra import db, telemetry
from infra.config import default_thresholds, get_settings
from infra.readers import Reader, save_reader
from infra.runreport import failed_stage
from infra.store import Store
from tests.fake_sentry import FakeSentry
from tests.fakes.newsroom import Newsroom, newsroom
from tests.fakes.telegram_api import TOKEN, FakeTelegram, SentMessage
from tests.fakes.upstash import FakeUpstash, ServedFake
from tests.llm_fakes import KEYS, FakeLLMServer

pytestmark = pytest.mark.slow

SECRET = "e2e-webhook-secret"
# The fake index's model scores on its own scale (see tests/cluster/conftest.py).
FAKE_UPSTASH_THRESHOLDS = {"en-en": 0.55, "zh-zh": 0.55, "en-zh": 0.45}
# Three readers: two languages, different topics.
READERS = {
    "economy": dict(
        chat_id="7001", lang="en", topics=["economy", "trade", "technology"]
    ),
    "strait": dict(chat_id="7002", lang="zh", topics=["台湾", "香港", "外交"]),
    "planet": dict(chat_id="7003", lang="en", topics=["environment", "science"]),
}
VERIFIED = {"en": "✓ Fact-checked against the articles", "zh": "✓ 已对照原文核查"}
WRITTEN = {"en": "Written summary", "zh": "模型撰写的摘要"}


class Killed(BaseException):
    """The process dies here: nothing in the run gets to handle it."""


@dataclass
class Servers:
    llm: FakeLLMServer
    upstash: ServedFake
    telegram: FakeTelegram
    feeds: str
    now: datetime


@dataclass
class World:
    """One installation: its store, readers and sources, and the fakes it talks to."""

    servers: Servers
    store: Store
    sources: Path
    readers: dict[str, Reader]
    model: Newsroom

    @property
    def telegram(self) -> FakeTelegram:
        return self.servers.telegram

    @property
    def first(self) -> datetime:
        """The first edition's time: the newest sample item is an hour old."""
        return self.servers.now

    def _digest_run(self, as_of: datetime) -> Any:
        """`digest run` as a person types it, for the edition of `as_of`."""
        try:
            return CliRunner().invoke(
                cli,
                ["run", "--sources", str(self.sources), "--as-of", as_of.isoformat()]
                + ["--json"],
            )
        finally:
            # Time passes between runs: the index makes every vector searchable.
            self.servers.upstash.fake.settle()

    def run(self, as_of: datetime) -> dict[str, Any]:
        """A run that finishes; returns its report."""
        result = self._digest_run(as_of)
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))

    def run_killed(self, as_of: datetime, death: type[BaseException]) -> None:
        """A run that dies of `death` (it escapes the command, as a kill would)."""
        with pytest.raises(death):
            self._digest_run(as_of)

    def predict(self, as_of: datetime) -> dict[str, list[str]]:
        """Each reader's stories for an edition, built but not delivered."""
        options = RunOptions(
            sources_path=self.sources,
            as_of=as_of,
            collect=False,
            cluster=False,
            deliver=False,
            save=False,
        )
        report = run_once(get_settings(), self.store, options)
        return stories_by_reader(report)

    def tap(self, reader: Reader, data: str) -> None:
        """A button under a digest, tapped in Telegram: through the webhook app."""
        update = self.telegram.callback_update(int(reader.chat_id), data)
        with TestClient(create_app(get_settings())) as client:
            response = client.post(
                WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET}
            )
        assert response.status_code == 200

    def messages(self, reader: Reader) -> list[SentMessage]:
        return self.telegram.messages_to(reader.chat_id)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    llm, telegram = FakeLLMServer(), FakeTelegram()
    llm.start()
    try:
        telegram.start()
        with ServedFake(FakeUpstash()) as upstash, serve_samples(now=now) as feeds:
            yield Servers(llm, upstash, telegram, feeds, now)
    finally:
        telegram.stop()
        llm.stop()


@pytest.fixture
def world(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[World]:
    servers.llm.reset()
    model = newsroom(servers.llm)
    servers.upstash.fake.reset()
    # Looser than Telegram's one a second per chat, so pacing jitter is no 429.
    servers.telegram.reset(chat_interval=0.5)

    env = {
        **{k: v for k, v in servers.llm.env().items() if not k.startswith("OPENAI")},
        "DIGEST_LLM_ORDER": "deepseek,qwen",
        "UPSTASH_VECTOR_REST_URL": servers.upstash.url,
        "UPSTASH_VECTOR_REST_TOKEN": servers.upstash.fake.token,
        "DIGEST_CLUSTER_THRESHOLDS": json.dumps(
            {**default_thresholds(), "upstash": FAKE_UPSTASH_THRESHOLDS}
        ),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": servers.telegram.api_root,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    sources = tmp_path / "sources.toml"
    sources.write_text(
        re.sub(
            r'^url = "([^"]+)"',
            lambda m: f'url = "{servers.feeds}/{m.group(1)}"',
            (SAMPLES / "sources.toml").read_text(encoding="utf-8"),
            flags=re.MULTILINE,
        ),
        encoding="utf-8",
    )
    store = Store(get_settings().store_url)
    readers = {
        name: save_reader(store, Reader(id="", digest_size=4, **fields))  # type: ignore[arg-type]
        for name, fields in READERS.items()
    }

    _register()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield World(servers, store, sources, readers, model)
    root.handlers[:] = handlers
    root.setLevel(level)
    store.close()


def stories_by_reader(report: dict[str, Any]) -> dict[str, list[str]]:
    return {e["reader_id"]: e["stories"] for e in report["editions"]}


def summary_rows(store: Store) -> list[Any]:
    with store.begin() as conn:
        return list(conn.execute(select(db.summaries)).all())


def summary_of(store: Store, story_id: str, lang: str) -> Summary:
    table = db.summaries
    with store.begin() as conn:
        row = conn.execute(
            select(table.c.payload).where(
                table.c.story_id == story_id, table.c.lang == lang
            )
        ).one()
    return summary_from_dict(row.payload)


def fact_check_rows(store: Store) -> list[Any]:
    with store.begin() as conn:
        return list(conn.execute(select(db.fact_checks)).all())


def item_count(store: Store) -> int:
    with store.begin() as conn:
        return len(conn.execute(select(db.items.c.id)).all())


def script_of(text: str) -> str:
    return "zh" if is_cjk(fold(text)) else "en"


def assert_delivered_once(world: World, *editions: str) -> None:
    """Each reader got every part of these editions once, and nothing else."""
    ledger = DeliveryLedger(world.store)
    for reader in world.readers.values():
        received = {m.message_id: m for m in world.messages(reader)}
        sent = []
        for edition in editions:
            parts = ledger.parts(reader.id, edition)
            assert parts and {p["status"] for p in parts} == {"sent"}
            first = received[int(parts[0]["message_id"])]
            assert f"China to Watch · {edition}\n" in first.visible
            sent += [int(p["message_id"]) for p in parts]
        assert sorted(received) == sorted(sent)
        texts = [m.text for m in received.values()]
        assert len(set(texts)) == len(texts)


def test_three_readers_get_their_own_checked_digest_once_and_a_tap_shapes_the_next(
    world: World,
) -> None:
    first, edition = world.first, world.first.strftime("%Y-%m-%d")

    report = world.run(first)

    # Every port was the vendor's, and nothing fell back.
    assert report["status"] == "ok", report.get("degraded")
    cluster = report["stages"]["cluster"]
    assert (cluster["index"], cluster["fallback"]) == ("upstash", None)
    assert report["stories"] > 20 and cluster["removed"]["semantic"] > 0
    assert len(world.servers.upstash.fake.stored()) == item_count(world.store)
    assert report["deliveries"]["channel"] == "telegram"
    assert report["deliveries"]["statuses"] == {"sent": 3}

    # Each story was written by DeepSeek in both languages and checked by Qwen.
    summaries = summary_rows(world.store)
    assert len(summaries) == 2 * report["stories"]
    assert {(s.method, s.provider, s.verdict) for s in summaries} == {
        ("llm", "deepseek", "verified")
    }
    assert report["summaries"]["llm"] == len(summaries)
    assert report["summaries"]["fallback"] == 0
    assert report["stages"]["edit"]["verdicts"] == {"verified": len(summaries)}
    checks = fact_check_rows(world.store)
    assert {(c.writer, c.checker, c.verdict) for c in checks} == {
        ("deepseek", "qwen", "supported")
    }
    assert all(c.evidence for c in checks)
    assert world.model.served == Counter(
        {
            ("deepseek", "summarize"): len(summaries),
            ("qwen", "factcheck"): len(summaries),
            ("deepseek", "opening"): 3,
        }
    )

    # Three different digests, each in its reader's language, each story checked.
    stories = stories_by_reader(report)
    texts = {
        name: "\n".join(m.visible for m in world.messages(reader))
        for name, reader in world.readers.items()
    }
    assert len({tuple(s) for s in stories.values()}) == 3
    assert len(set(texts.values())) == 3
    for name, reader in world.readers.items():
        mine, text = stories[reader.id], texts[name]
        assert len(mine) == reader.digest_size
        assert text.count(WRITTEN[reader.lang]) == len(mine)
        assert text.count(VERIFIED[reader.lang]) == len(mine)
        for story_id in mine:
            summary = summary_of(world.store, story_id, reader.lang)
            assert clean(summary.headline) in text
            assert {script_of(s) for s in summary.sentences} == {reader.lang}
    assert_delivered_once(world, edition)

    # The same edition again: nothing is sent twice.
    sends = len(world.telegram.calls("sendMessage"))
    again = world.run(first)
    assert len(world.telegram.calls("sendMessage")) == sends
    assert again["deliveries"]["messages_sent"] == 0
    assert again["deliveries"]["skipped"] == 3
    assert stories_by_reader(again) == stories

    # A reader mutes the topic of a story they got, one tomorrow's edition
    # would have had again; then tomorrow's edition leaves it out.
    tomorrow = first + timedelta(days=1)
    predicted = world.predict(tomorrow)
    economy = world.readers["economy"]
    topic_of = {
        s: summary_of(world.store, s, "en").topics for s in predicted[economy.id]
    }
    mutable = [
        (story_id, topics[0])
        for story_id in stories[economy.id]
        if (topics := summary_of(world.store, story_id, "en").topics)
        and any(topics[0] in later for later in topic_of.values())
    ]
    assert mutable, "no topic of today's digest comes again tomorrow"
    tapped, topic = mutable[0]
    [button] = [
        button["callback_data"]
        for message in world.messages(economy)
        for row in (message.reply_markup or {}).get("inline_keyboard", [])
        for button in row
        if button["callback_data"] == f"fb:x:{tapped}"
    ]

    world.tap(economy, button)

    assert "Muted topic" in world.telegram.answers[-1]["text"]
    assert [(f["story_id"], f["action"], f["topic"]) for f in reader_feedback(
        world.store, economy.id
    )] == [(tapped, "mute", topic)]  # fmt: skip

    sends = len(world.telegram.calls("sendMessage"))
    second = world.run(tomorrow)
    actual = stories_by_reader(second)
    assert second["status"] == "ok", second.get("degraded")
    assert actual[economy.id] != predicted[economy.id]
    assert all(topic not in topic_of.get(s, []) for s in actual[economy.id])
    for reader in world.readers.values():
        if reader is not economy:
            assert actual[reader.id] == predicted[reader.id]
        assert not set(actual[reader.id]) & set(stories[reader.id])
    assert len(world.telegram.calls("sendMessage")) > sends
    assert_delivered_once(world, edition, tomorrow.strftime("%Y-%m-%d"))

    # And tomorrow's edition again: still nothing twice.
    sends = len(world.telegram.calls("sendMessage"))
    world.run(tomorrow)
    assert len(world.telegram.calls("sendMessage")) == sends


# Killing a run ---------------------------------------------------------------
# Each installs a death at one stage and returns what the run dies of.


def die_collecting(monkeypatch: pytest.MonkeyPatch) -> type[BaseException]:
    """Dies storing the fifth source's items; four sources' are already stored."""
    real = Store.upsert_items
    stored: list[object] = []

    def upsert_items(self: Store, items: Any) -> Any:
        if len(stored) == 4:
            raise Killed
        stored.append(items)
        return real(self, items)

    monkeypatch.setattr(Store, "upsert_items", upsert_items)
    return Killed


def die_clustering(monkeypatch: pytest.MonkeyPatch) -> type[BaseException]:
    """Dies with the stories committed, before Upstash is told each vector's story."""
    import functions.cluster

    async def store_vectors(*args: Any) -> None:
        raise Killed

    monkeypatch.setattr(functions.cluster, "_store_vectors", store_vectors)
    return Killed


def die_editing(monkeypatch: pytest.MonkeyPatch) -> type[BaseException]:
    """Dies with twenty checked summaries stored and the rest in flight."""
    import functions.summarize

    real = functions.summarize.save_summary
    saved: list[object] = []

    def save_summary(*args: Any) -> None:
        if len(saved) == 20:
            raise Killed
        saved.append(args)
        real(*args)

    monkeypatch.setattr(functions.summarize, "save_summary", save_summary)
    return Killed


def die_delivering(monkeypatch: pytest.MonkeyPatch) -> type[BaseException]:
    """The run is cancelled while its second message is on the wire."""
    import bot.channels

    real_broadcast, real_post = (
        bot.channels.broadcast,
        bot.channels.TelegramChannel._post,
    )
    run: list[asyncio.Task[Any]] = []
    posts: list[object] = []

    async def broadcast(*args: Any, **kwargs: Any) -> Any:
        run.append(asyncio.current_task())  # type: ignore[arg-type]
        return await real_broadcast(*args, **kwargs)

    async def post(self: Any, *args: Any) -> Any:
        posts.append(args)
        if len(posts) == 2:
            run[0].cancel()
        return await real_post(self, *args)

    monkeypatch.setattr(bot.channels, "broadcast", broadcast)
    monkeypatch.setattr(bot.channels.TelegramChannel, "_post", post)
    return asyncio.CancelledError


@pytest.mark.parametrize(
    ("stage", "die"),
    [
        pytest.param("collect", die_collecting, id="collect"),
        pytest.param("cluster", die_clustering, id="cluster"),
        pytest.param("edit", die_editing, id="edit"),
        pytest.param("deliver", die_delivering, id="deliver"),
    ],
)
def test_a_run_killed_at_any_stage_then_run_again_delivers_each_digest_once(
    world: World, stage: str, die: Any
) -> None:
    edition = world.first.strftime("%Y-%m-%d")
    with pytest.MonkeyPatch.context() as patch:
        death = die(patch)
        world.run_killed(world.first, death)
    [killed] = world.store.recent_runs()
    before = {r.id: len(world.messages(r)) for r in world.readers.values()}
    assert (sum(before.values()) > 0) == (stage == "deliver")

    report = world.run(world.first)

    assert killed["status"] == "failed"
    assert killed["report"]["error"] == f"interrupted: {death.__name__}"
    assert failed_stage(killed["report"]) == stage
    assert report["status"] == "ok", report.get("degraded")
    assert report["deliveries"]["statuses"] == {"sent": 3}
    assert_delivered_once(world, edition)
    # The second run sent what the first had not, and nothing it had.
    assert report["deliveries"]["messages_sent"] == sum(
        len(world.messages(r)) - before[r.id] for r in world.readers.values()
    )
    # Nothing the first run did is lost: every item reached the index, and
    # every summary was written and checked.
    assert len(world.servers.upstash.fake.stored()) == item_count(world.store)
    summaries = summary_rows(world.store)
    assert len(summaries) == 2 * report["stories"]
    assert {(s.method, s.verdict) for s in summaries} == {("llm", "verified")}


# Sentry ----------------------------------------------------------------------


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    fake = FakeSentry().start()
    yield fake
    telemetry.shutdown()
    fake.stop()


def test_a_failing_job_reaches_sentry_and_the_run_report_without_a_secret(
    world: World, sentry: FakeSentry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot token was revoked: Telegram refuses it and every delivery fails."""
    revoked = "987654321:AAOldRevokedTokenForTests_0123456789"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", revoked)
    monkeypatch.setenv("SENTRY_DSN", sentry.dsn)
    get_settings.cache_clear()
    now = datetime.now(UTC)
    for reader in world.readers.values():
        reader.delivery_hour, reader.timezone = now.hour, "UTC"
        save_reader(world.store, reader)

    with pytest.raises(JobFailed):
        digest_job(get_settings(), now=now)
    # The same refusal in a run by hand.
    by_hand = RunOptions(sources_path=world.sources, collect=False, cluster=False)
    with pytest.raises(InvalidToken):
        run_once(get_settings(), world.store, by_hand)
    telemetry.flush()

    assert [c["status"] for c in sentry.items("check_in")] == ["in_progress", "error"]
    events = sentry.items("event")
    assert {e["tags"].get("job") for e in events} == {"digest", None}
    failures = [
        e for e in events if e.get("logentry", {}).get("message") == "run failed"
    ]
    assert [e["tags"]["stage"] for e in failures] == ["deliver", "deliver"]
    assert failures[0]["tags"]["run_id"].startswith("digest-")
    assert all(
        e["exception"]["values"][-1]["type"] in ("InvalidToken", "JobFailed")
        for e in events
    )
    raw = sentry.raw().decode()
    assert "was rejected by the server" in raw
    for secret in (
        revoked,
        TOKEN,
        SECRET,
        *KEYS.values(),
        world.servers.upstash.fake.token,
    ):
        assert secret not in raw

    [run] = [r for r in world.store.recent_runs() if r["kind"] == "run"]
    assert (run["status"], failed_stage(run["report"])) == ("failed", "deliver")
    shown = CliRunner().invoke(cli, ["status", "--run", run["id"]])
    assert "The token `[redacted]` was rejected by the server." in shown.output
    assert revoked not in shown.output
