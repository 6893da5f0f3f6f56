"""`digest bot`, `digest readers ...` and `digest send`: the bot on the command line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import asdict

import click

from bot.client import BotNotConfigured, make_bot
from infra.config import get_settings
from infra.readers import (
    Reader,
    get_reader,
    list_readers,
    remove_reader,
    save_reader,
)
from infra.store import open_store

_LOGGER = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "callback_query"]


def _fail_without_token(error: BotNotConfigured) -> click.ClickException:
    return click.ClickException(str(error))


@click.command()
@click.option(
    "--set-webhook",
    "webhook_url",
    metavar="URL",
    help="Register URL as the webhook (with TELEGRAM_WEBHOOK_SECRET) and exit.",
)
@click.option("--delete-webhook", is_flag=True, help="Remove the webhook and exit.")
def bot(webhook_url: str | None, delete_webhook: bool) -> None:
    """Run the bot by long polling, or manage its webhook."""
    from bot.handlers import build_application

    settings = get_settings()
    try:
        if webhook_url or delete_webhook:
            asyncio.run(_manage_webhook(webhook_url, delete_webhook))
            return
        application = build_application(settings, polling=True)
    except BotNotConfigured as error:
        raise _fail_without_token(error) from error
    click.echo("Polling Telegram for updates; Ctrl-C stops.", err=True)
    application.run_polling(allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False)


async def _manage_webhook(url: str | None, delete: bool) -> None:
    from bot.handlers import set_commands

    settings = get_settings()
    async with make_bot(settings) as client:
        if delete:
            await client.delete_webhook()
            click.echo("Webhook removed.")
            return
        if settings.telegram_webhook_secret is None:
            raise click.ClickException(
                "TELEGRAM_WEBHOOK_SECRET is not set: the webhook would refuse every "
                "update. Set it (1-256 characters of A-Z, a-z, 0-9, _ and -)."
            )
        await client.set_webhook(
            url=url or "",
            secret_token=settings.telegram_webhook_secret.get_secret_value(),
            allowed_updates=ALLOWED_UPDATES,
            drop_pending_updates=False,
        )
        await set_commands(client, set(settings.admin_chat_ids))
    click.echo(f"Webhook set to {url}; commands registered.")


@click.group()
def readers() -> None:
    """Manage readers without the bot (imports, trying a run)."""


@readers.command("add")
@click.option("--chat-id", required=True, help="Telegram chat id of the reader.")
@click.option(
    "--lang",
    type=click.Choice(["en", "zh"]),
    default=None,
    help="Digest language (new readers: en).",
)
@click.option("--topics", default=None, help="Comma-separated topic keys.")
@click.option("--digest-size", type=click.IntRange(1, 30), default=None)
def readers_add(
    chat_id: str, lang: str | None, topics: str | None, digest_size: int | None
) -> None:
    """Add a reader, or change only the given fields of the one with this chat id.

    An existing reader keeps everything not given here: muted topics,
    delivery hour, time zone, and whether they unsubscribed with /stop.
    """
    if not chat_id.lstrip("-").isdigit():
        raise click.BadParameter("a chat id is a number", param_hint="--chat-id")
    store = open_store()
    reader = get_reader(store, chat_id=chat_id) or Reader(
        id="", chat_id=chat_id, digest_size=get_settings().digest_size
    )
    if lang is not None:
        reader.lang = lang
    if topics is not None:
        reader.topics = [t.strip().lower() for t in topics.split(",") if t.strip()]
    if digest_size is not None:
        reader.digest_size = digest_size
    saved = save_reader(store, reader)
    state = "" if saved.active else " (unsubscribed: /start resubscribes)"
    click.echo(f"Reader {saved.id} (chat {saved.chat_id}, {saved.lang}) saved{state}.")


@readers.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def readers_list(as_json: bool) -> None:
    """List readers, active or not."""
    found = list_readers(open_store())
    if as_json:
        click.echo(json.dumps([asdict(r) for r in found], ensure_ascii=False, indent=2))
        return
    if not found:
        click.echo("No readers yet: `digest readers add --chat-id ID` adds one.")
        return
    for r in found:
        state = "active" if r.active else "inactive"
        topics = ",".join(r.topics) or "all topics"
        click.echo(f"{r.id}  chat {r.chat_id}  {r.lang}  {state}  {topics}")


@readers.command("remove")
@click.option("--chat-id", required=True, help="Telegram chat id of the reader.")
def readers_remove(chat_id: str) -> None:
    """Remove a reader for good (/stop only deactivates)."""
    if not remove_reader(open_store(), chat_id):
        raise click.ClickException(f"no reader with chat id {chat_id}")
    click.echo(f"Reader with chat {chat_id} removed.")


@click.command()
@click.option(
    "--channel",
    type=click.Choice(["auto", "console", "telegram"]),
    default="auto",
    show_default=True,
    help="auto: Telegram if TELEGRAM_BOT_TOKEN is set, else the console.",
)
@click.option("--edition", default=None, help="Edition key (default: today's date).")
@click.option("--preview", type=click.Path(dir_okay=False), default=None)
def send(channel: str, edition: str | None, preview: str | None) -> None:
    """Send every active reader their digest from stored stories (no fetching)."""
    from pathlib import Path

    from bot.channels import deliver_digests
    from bot.render import write_preview
    from functions.run import edit_for_readers

    settings = get_settings()
    store = open_store()
    active = list_readers(store, active_only=True)
    if not active:
        raise click.ClickException("no active readers: `digest readers add` adds one")

    async def run() -> None:
        digests = await edit_for_readers(settings, store, active, edition=edition)
        if preview:
            click.echo(f"Preview: {write_preview(digests, Path(preview))}", err=True)
        report = await deliver_digests(
            settings,
            store,
            zip(active, digests, strict=True),
            channel=channel,
            stream=sys.stdout,
        )
        click.echo(
            f"{report.messages_sent} messages sent to {len(active)} readers in "
            f"{report.seconds:.1f} s; statuses {report.statuses}",
            err=True,
        )

    try:
        asyncio.run(run())
    except BotNotConfigured as error:
        raise _fail_without_token(error) from error


COMMANDS: list[click.Command] = [bot, readers, send]
