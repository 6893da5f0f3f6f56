"""Channels deliver a reader's digest: the console locally, Telegram in production.

Both go through `Channel.deliver`, which claims each message part in the
delivery ledger before sending it and records how it ended, so a re-run
never sends a part twice and a crashed broadcast resumes where it stopped.

Errors a channel raises while sending:

    DeliveryError
     ├── RetryLater      transient (network, repeated 429): the next run retries
     ├── ReaderGone      blocked the bot, deactivated, chat gone: reader inactive
     └── Undeliverable   Telegram refused this message for good
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import sys
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import update
from telegram import Bot, LinkPreviewOptions, Message as TelegramMessage
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
)

from bot import feedback
from bot.client import make_bot
from bot.ledger import BLOCKED, FAILED, RETRY, SENT, DeliveryLedger
from bot.limits import RateLimiter, TelegramPacing, retry_after_seconds
from bot.render import render_text, telegram_parts
from functions.models import Digest
from infra import db
from infra.config import Settings
from infra.readers import Reader, set_active
from infra.store import Store, utcnow

_LOGGER = logging.getLogger(__name__)

# Telegram's wording for a chat that can no longer be written to.
_GONE = ("chat not found", "user is deactivated", "bot was blocked", "kicked")
_LINK = re.compile(r'<a href="([^"]*)">(.*?)</a>', re.DOTALL)


class DeliveryError(Exception):
    """A message could not be delivered now."""


class RetryLater(DeliveryError):
    """A transient failure: the part stays pending for the next run."""


class ReaderGone(DeliveryError):
    """The reader blocked the bot or their chat is gone."""


class Undeliverable(DeliveryError):
    """Telegram refused this message and will refuse it again."""


@dataclass(frozen=True)
class OutgoingMessage:
    """One message of a delivery and the stories it carries."""

    body: str
    story_ids: tuple[str, ...] = ()


@dataclass
class DeliveryResult:
    """How one reader's edition went: status sent, retry, blocked, failed or busy."""

    reader_id: str
    edition: str
    channel: str
    parts: int
    status: str = SENT
    sent: int = 0
    skipped: int = 0
    plain_fallbacks: int = 0
    flood_waits: int = 0
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.status == SENT


@dataclass
class SendAttempt:
    """What happened while sending one part, filled in by the channel."""

    message_id: str | None = None
    plain_fallback: str | None = None
    flood_waits: int = 0


class Channel(ABC):
    """Renders a digest into messages and sends them, each exactly once."""

    name = "channel"

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self.ledger = DeliveryLedger(store) if store is not None else None

    @abstractmethod
    def render(self, digest: Digest) -> list[OutgoingMessage]:
        """The digest as this channel's messages."""

    @abstractmethod
    async def send(
        self,
        reader: Reader,
        message: OutgoingMessage,
        digest: Digest | None,
        attempt: SendAttempt,
    ) -> str | None:
        """Send one message; returns the channel's message id if it has one."""

    async def deliver(self, reader: Reader, digest: Digest) -> DeliveryResult:
        """Deliver one reader's digest; parts already sent are skipped."""
        return await self.deliver_messages(
            reader, digest.edition, self.render(digest), digest=digest
        )

    async def deliver_messages(
        self,
        reader: Reader,
        edition: str,
        messages: list[OutgoingMessage],
        *,
        digest: Digest | None = None,
    ) -> DeliveryResult:
        """Send messages in order under one edition key, recording each part."""
        if self.ledger is not None and messages:
            planned = await asyncio.to_thread(
                self.ledger.freeze,
                reader.id,
                edition,
                [(m.body, tuple(m.story_ids)) for m in messages],
            )
            if [m.body for m in messages] != [body for body, _ in planned]:
                _LOGGER.info(
                    "edition %s for reader %s was planned before: sending that plan",
                    edition,
                    reader.id,
                )
            messages = [OutgoingMessage(body, ids) for body, ids in planned]
        result = DeliveryResult(reader.id, edition, self.name, parts=len(messages))
        for part, message in enumerate(messages):
            if self.ledger is not None:
                # Ledger writes run in a thread so the pacing loop never stalls.
                claim = await asyncio.to_thread(
                    self.ledger.claim, reader.id, edition, part, message.story_ids
                )
                if not claim.claimed:
                    if claim.status == SENT:
                        result.skipped += 1
                        continue
                    result.status = (
                        claim.status if claim.status != "sending" else "busy"
                    )
                    break

            attempt = SendAttempt()
            try:
                message_id = await self.send(reader, message, digest, attempt)
            except ReaderGone as exc:
                self._mark(reader, edition, part, BLOCKED, error=str(exc))
                if self.store is not None:
                    set_active(self.store, reader.id, False)
                result.status, result.error = BLOCKED, str(exc)
                break
            except Undeliverable as exc:
                self._mark(reader, edition, part, FAILED, error=str(exc))
                result.status, result.error = FAILED, str(exc)
                break
            except RetryLater as exc:
                self._mark(reader, edition, part, RETRY, error=str(exc))
                result.status, result.error = RETRY, str(exc)
                break
            except BaseException as exc:
                # Cancelled or crashed: a message already on the wire is recorded.
                if attempt.message_id is not None:
                    self._mark(
                        reader, edition, part, SENT, message_id=attempt.message_id
                    )
                else:
                    self._mark(reader, edition, part, RETRY, error=type(exc).__name__)
                raise
            finally:
                result.flood_waits += attempt.flood_waits
            try:
                await asyncio.to_thread(
                    self._mark, reader, edition, part, SENT,
                    message_id=message_id, error=attempt.plain_fallback,
                )  # fmt: skip
            except asyncio.CancelledError:
                # The message is out: a cancelled (maybe never started) worker
                # thread must not leave the part claimable, or a re-run repeats it.
                self._mark(
                    reader, edition, part, SENT,
                    message_id=message_id, error=attempt.plain_fallback,
                )  # fmt: skip
                raise
            if digest is not None and self.store is not None and message.story_ids:
                # What a tap under this message resolves its topic and source from.
                wanted = set(message.story_ids)
                await asyncio.to_thread(
                    feedback.remember_stories,
                    self.store,
                    reader.id,
                    edition,
                    [e for e in digest.entries if e.story.id in wanted],
                )
            result.sent += 1
            if attempt.plain_fallback:
                result.plain_fallbacks += 1

        log = _LOGGER.debug if result.complete else _LOGGER.info
        log(
            "edition %s for reader %s on %s: %s, %d of %d parts sent now, %d before",
            edition,
            reader.id,
            self.name,
            result.status,
            result.sent,
            result.parts,
            result.skipped,
        )
        return result

    def _mark(
        self, reader: Reader, edition: str, part: int, status: str, **kw: Any
    ) -> None:
        if self.ledger is not None:
            self.ledger.mark(reader.id, edition, part, status, **kw)


class ConsoleChannel(Channel):
    """Prints each digest as text: the local stand-in for Telegram."""

    name = "console"

    def __init__(self, store: Store | None = None, *, stream: IO[str] | None = None):
        super().__init__(store)
        self.stream = stream

    def render(self, digest: Digest) -> list[OutgoingMessage]:
        ids = tuple(entry.story.id for entry in digest.entries)
        return [OutgoingMessage(render_text(digest), ids)]

    async def send(
        self,
        reader: Reader,
        message: OutgoingMessage,
        digest: Digest | None,
        attempt: SendAttempt,
    ) -> str | None:
        stream = self.stream or sys.stdout
        stream.write(f"── to {reader.id} ({reader.lang}) ──\n{message.body}\n")
        stream.flush()
        return None


class TelegramChannel(Channel):
    """Sends HTML messages with feedback buttons through the Bot API."""

    name = "telegram"

    def __init__(
        self,
        bot: Bot,
        store: Store | None = None,
        *,
        limiter: RateLimiter | None = None,
        max_flood_waits: int = 5,
        network_retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        super().__init__(store)
        self.bot = bot
        pacing = getattr(bot, "rate_limiter", None)
        # An application's bot may pace every send itself; then we leave it to it.
        self._bot_paces = isinstance(pacing, TelegramPacing)
        if isinstance(pacing, TelegramPacing) and limiter is None:
            limiter = pacing.limiter
        self.limiter = limiter or RateLimiter()
        self.max_flood_waits = max_flood_waits
        self.network_retries = network_retries
        self.backoff = backoff

    def render(self, digest: Digest) -> list[OutgoingMessage]:
        return [
            OutgoingMessage(part.html, part.story_ids)
            for part in telegram_parts(digest)
        ]

    async def send(
        self,
        reader: Reader,
        message: OutgoingMessage,
        digest: Digest | None,
        attempt: SendAttempt,
    ) -> str | None:
        chat_id = reader.chat_id
        body: str = message.body
        parse_mode: str | None = ParseMode.HTML
        markup = None
        if digest is not None and message.story_ids:
            markup = feedback.keyboard(digest.entries, message.story_ids, digest.lang)
        network_failures = 0

        while True:
            if not self._bot_paces:
                await self.limiter.wait(chat_id)
            try:
                sent = await self._post(chat_id, body, parse_mode, markup, attempt)
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                if not self._bot_paces:
                    self.limiter.retry_after(chat_id, seconds)
                attempt.flood_waits += 1
                if attempt.flood_waits > self.max_flood_waits:
                    raise RetryLater(
                        f"flood control: retry after {seconds:.0f} s"
                    ) from exc
                continue
            except Forbidden as exc:
                raise ReaderGone(exc.message) from exc
            except ChatMigrated as exc:
                chat_id = str(exc.new_chat_id)
                self._move_chat(reader, chat_id)
                continue
            except BadRequest as exc:
                reason = exc.message.lower()
                if parse_mode is not None and "can't parse entities" in reason:
                    # Our renderer made HTML Telegram refused: a bug worth an event.
                    _LOGGER.error(
                        "Telegram could not parse a part for reader %s (%s): "
                        "sending it as plain text",
                        reader.id,
                        exc.message,
                    )
                    attempt.plain_fallback = f"sent as plain text: {exc.message}"
                    body, parse_mode = to_plain_text(body), None
                    continue
                if any(marker in reason for marker in _GONE):
                    raise ReaderGone(exc.message) from exc
                raise Undeliverable(exc.message) from exc
            except NetworkError as exc:
                network_failures += 1
                if network_failures > self.network_retries:
                    raise RetryLater(f"network: {exc.message}") from exc
                await asyncio.sleep(self.backoff * 2 ** (network_failures - 1))
                continue
            if not self._bot_paces:
                self.limiter.succeeded()
            return str(sent.message_id)

    async def _post(
        self,
        chat_id: str,
        body: str,
        parse_mode: str | None,
        markup: Any,
        attempt: SendAttempt,
    ) -> TelegramMessage:
        """Send, and if cancelled meanwhile, finish the request and note its id."""
        request = asyncio.ensure_future(
            self.bot.send_message(
                chat_id=chat_id,
                text=body,
                parse_mode=parse_mode,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                reply_markup=markup,
            )
        )
        try:
            return await asyncio.shield(request)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                sent = await request
                attempt.message_id = str(sent.message_id)
            raise

    def _move_chat(self, reader: Reader, chat_id: str) -> None:
        """A group became a supergroup: follow it to its new chat id."""
        _LOGGER.info("reader %s moved to a new chat id", reader.id)
        reader.chat_id = chat_id
        if self.store is not None:
            with self.store.begin() as conn:
                conn.execute(
                    update(db.readers)
                    .where(db.readers.c.id == reader.id)
                    .values(chat_id=chat_id, updated_at=utcnow())
                )


def to_plain_text(body: str) -> str:
    """An HTML message as plain text, keeping each link's address."""
    pieces = []
    position = 0
    for link in _LINK.finditer(body):
        pieces.append(_strip_tags(body[position : link.start()]))
        pieces.append(f"{_strip_tags(link.group(2))} <{html.unescape(link.group(1))}>")
        position = link.end()
    pieces.append(_strip_tags(body[position:]))
    return "".join(pieces)


def _strip_tags(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", "", fragment))


@dataclass
class BroadcastReport:
    """How a broadcast went, counted across readers."""

    results: list[DeliveryResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def statuses(self) -> dict[str, int]:
        return dict(Counter(result.status for result in self.results))

    @property
    def messages_sent(self) -> int:
        return sum(result.sent for result in self.results)

    @property
    def plain_fallbacks(self) -> int:
        return sum(result.plain_fallbacks for result in self.results)


async def broadcast(
    channel: Channel,
    jobs: Iterable[tuple[Reader, Digest]],
    *,
    concurrency: int = 64,
) -> BroadcastReport:
    """Deliver many readers' digests at once; the channel's limiter sets the pace."""

    async def one(job: tuple[Reader, Digest]) -> DeliveryResult:
        return await channel.deliver(*job)

    return await _pool(channel.name, list(jobs), one, concurrency)


async def broadcast_messages(
    channel: Channel,
    readers: Iterable[Reader],
    *,
    edition: str,
    messages: list[OutgoingMessage],
    concurrency: int = 64,
) -> BroadcastReport:
    """The same messages to many readers, once each under one edition key."""

    async def one(reader: Reader) -> DeliveryResult:
        return await channel.deliver_messages(reader, edition, messages)

    return await _pool(channel.name, list(readers), one, concurrency)


async def _pool(
    name: str,
    jobs: list[Any],
    run: Callable[[Any], Awaitable[DeliveryResult]],
    concurrency: int,
) -> BroadcastReport:
    """Run jobs on a fixed number of workers; one crash cancels the rest."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    report = BroadcastReport()
    started = time.monotonic()

    async def worker() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            report.results.append(await run(job))

    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, min(concurrency, len(jobs)))):
            group.create_task(worker())
    report.seconds = time.monotonic() - started
    _LOGGER.info(
        "broadcast on %s: %d readers in %.1f s, %d messages sent, statuses %s, "
        "%d sent as plain text",
        name,
        len(report.results),
        report.seconds,
        report.messages_sent,
        report.statuses,
        report.plain_fallbacks,
    )
    return report


async def deliver_digests(
    settings: Settings,
    store: Store,
    jobs: Iterable[tuple[Reader, Digest]],
    *,
    channel: str = "auto",
    stream: IO[str] | None = None,
) -> BroadcastReport:
    """Deliver digests on Telegram (if a token is set, or asked for) or the console."""
    if channel not in ("auto", "console", "telegram"):
        raise ValueError(f"unknown channel {channel!r}")
    use_telegram = channel == "telegram" or (
        channel == "auto" and settings.telegram_bot_token is not None
    )
    if not use_telegram:
        return await broadcast(ConsoleChannel(store, stream=stream), jobs)
    async with make_bot(settings) as client:
        return await broadcast(TelegramChannel(client, store), jobs)
