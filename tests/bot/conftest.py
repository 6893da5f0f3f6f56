"""Fixtures of the bot's tests: the fake Bot API, a bot aimed at it, readers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from telegram import Bot

from bot.client import api_base_urls, make_request
from infra.readers import Reader, save_reader
from infra.store import Store
from tests.fakes.telegram_api import TOKEN, FakeTelegram


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeTelegram]:
    fake = FakeTelegram().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_factory(fake_server: FakeTelegram) -> Callable[..., FakeTelegram]:
    """The fake, emptied and given the limits a test asks for."""

    def configure(**options: object) -> FakeTelegram:
        return fake_server.reset(**options)  # type: ignore[arg-type]

    return configure


@pytest.fixture
def fake_tg(fake_factory: Callable[..., FakeTelegram]) -> FakeTelegram:
    """The fake with a per-chat interval short enough for tests."""
    return fake_factory(chat_interval=0.04)


@pytest.fixture
async def tg_bot(fake_tg: FakeTelegram) -> AsyncIterator[Bot]:
    base_url, base_file_url = api_base_urls(fake_tg.api_root)
    bot = Bot(
        TOKEN, base_url=base_url, base_file_url=base_file_url, request=make_request()
    )
    async with bot:
        yield bot


@pytest.fixture
def add_reader(store: Store) -> Callable[..., Reader]:
    def add(chat_id: int, **fields: object) -> Reader:
        return save_reader(store, Reader(id="", chat_id=str(chat_id), **fields))  # type: ignore[arg-type]

    return add
