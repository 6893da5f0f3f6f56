"""The run and its channel: no back-dated news to real readers, failures visible."""

from __future__ import annotations

import io
from pathlib import Path

from bot.channels import ConsoleChannel, OutgoingMessage, RetryLater, SendAttempt
from functions.models import Digest
from functions.run import RunOptions, run_once
from infra.config import Settings
from infra.readers import Reader, save_reader
from infra.store import Store

FEEDS = Path(__file__).parent / "fixtures" / "feeds"  # dated November 2025


class _DownChannel(ConsoleChannel):
    """A channel whose every send fails the way an unreachable Telegram does."""

    name = "down"

    async def send(
        self,
        reader: Reader,
        message: OutgoingMessage,
        digest: Digest | None,
        attempt: SendAttempt,
    ) -> str | None:
        raise RetryLater("network: connection refused")


def _reader(store: Store) -> Reader:
    return save_reader(store, Reader(id="", chat_id="5001", lang="en"))


def test_an_old_day_is_replayed_to_the_console_only(store: Store) -> None:
    _reader(store)
    console = io.StringIO()

    local = run_once(
        Settings(), store, RunOptions(sources_path=FEEDS, console=console), send=print
    )

    assert local["replay"] == "every stored item is older than the window"
    assert local["as_of"].startswith("2025-11")


def test_real_readers_never_get_a_back_dated_digest(store: Store) -> None:
    _reader(store)
    stream = io.StringIO()
    options = RunOptions(
        sources_path=FEEDS, channel=ConsoleChannel(store, stream=stream)
    )

    report = run_once(Settings(), store, options, send=lambda text: None)

    assert "replay" not in report
    assert not report["as_of"].startswith("2025")
    assert report["editions"][0]["stories"] == []
    assert "Nothing today met the bar" in stream.getvalue()


def test_a_digest_that_could_not_be_delivered_degrades_the_run(store: Store) -> None:
    _reader(store)
    alerts: list[str] = []
    options = RunOptions(sources_path=FEEDS, channel=_DownChannel(store))

    report = run_once(Settings(), store, options, send=alerts.append)

    assert report["status"] == "degraded"
    assert report["deliveries"]["failed"] == 1
    assert [f["kind"] for f in report["fallbacks"]] == ["delivery"]
    assert alerts, "a degraded run alerts the admin"


async def test_digest_command_sends_the_edited_digest_of_stored_stories(
    store: Store,
) -> None:
    from datetime import UTC, datetime

    from functions.run import digest_for_reader, run_job

    reader = _reader(store)
    as_of = datetime(2025, 11, 14, 12, tzinfo=UTC)
    options = RunOptions(sources_path=FEEDS, as_of=as_of, deliver=False)
    settings = Settings.model_validate({"DIGEST_SOURCES": str(FEEDS)})
    report = await run_job(settings, store, options)

    digest = await digest_for_reader(settings, store, reader, now=as_of)

    assert digest.reader_id == reader.id
    assert [e.story.id for e in digest.entries] == report["editions"][0]["stories"]
    assert {e.summary.verdict for e in digest.entries} == {"facts-checked"}
