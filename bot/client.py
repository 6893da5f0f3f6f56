"""The Bot API client, aimed at `TELEGRAM_API_BASE_URL` when that is set."""

from __future__ import annotations

from telegram import Bot
from telegram.request import HTTPXRequest

from infra.config import Settings

# Seconds; a broadcast spends most of its time waiting for slots, not on the wire.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
POOL_SIZE = 128


class BotNotConfigured(RuntimeError):
    """No bot token is set."""


def api_base_urls(root: str) -> tuple[str, str]:
    """PTB's base URL and file URL for an API root such as https://api.telegram.org.

    PTB appends the token to the base URL, so the base ends in "/bot". A root
    that already ends in "/bot" or carries a "{token}" placeholder is kept.
    """
    root = root.strip().rstrip("/")
    if "{token}" in root:
        return root, root.replace("/bot{token}", "/file/bot{token}")
    root = root.removesuffix("/bot")
    return f"{root}/bot", f"{root}/file/bot"


def bot_token(settings: Settings) -> str:
    if settings.telegram_bot_token is None:
        raise BotNotConfigured(
            "TELEGRAM_BOT_TOKEN is not set: put the token from @BotFather in the "
            "environment or .env, or use the console channel"
        )
    return settings.telegram_bot_token.get_secret_value()


def make_request(pool_size: int = POOL_SIZE) -> HTTPXRequest:
    return HTTPXRequest(
        connection_pool_size=pool_size,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        write_timeout=READ_TIMEOUT,
        pool_timeout=READ_TIMEOUT,
    )


def make_bot(settings: Settings) -> Bot:
    """A plain Bot for sending, outside any Application."""
    base_url, base_file_url = api_base_urls(settings.telegram_api_base_url)
    return Bot(
        bot_token(settings),
        base_url=base_url,
        base_file_url=base_file_url,
        request=make_request(),
    )
