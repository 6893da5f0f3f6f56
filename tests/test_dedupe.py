"""Webhook update de-duplication: each Telegram update is handled once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from infra.dedupe import DictSeenKeys, StoreSeenKeys, update_key
from infra.store import Store, utcnow


async def test_an_update_is_claimed_once(any_store: Store) -> None:
    seen = StoreSeenKeys(any_store)

    first = await seen.claim(update_key(1001))
    again = await seen.claim(update_key(1001))
    other = await seen.claim(update_key(1002))

    assert (first, again, other) == (True, False, True)


async def test_concurrent_redeliveries_are_claimed_once(any_store: Store) -> None:
    seen = [StoreSeenKeys(Store(any_store.url)) for _ in range(4)]

    results = await asyncio.gather(*(s.claim(update_key(7)) for s in seen))

    assert sorted(results) == [False, False, False, True]
    for s in seen:
        s.store.close()


def test_old_keys_are_pruned(any_store: Store) -> None:
    seen = StoreSeenKeys(any_store, retention=timedelta(days=2))
    seen.claim_sync("tg-update:1")

    assert seen.prune() == 0
    assert seen.prune(now=utcnow() + timedelta(days=2, seconds=1)) == 1
    assert seen.claim_sync("tg-update:1")


class _PutOnce:
    """The part of `modal.Dict` the port uses: `put.aio(..., skip_if_exists=...)`."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        outer = self

        class _Put:
            async def aio(self, key: str, value: Any, *, skip_if_exists: bool) -> bool:
                if skip_if_exists and key in outer.data:
                    return False
                outer.data[key] = value
                return True

        self.put = _Put()


async def test_the_dict_backend_answers_like_the_store() -> None:
    mapping = _PutOnce()
    seen = DictSeenKeys(mapping)

    assert await seen.claim(update_key(5))
    assert not await seen.claim(update_key(5))
    assert list(mapping.data) == ["tg-update:5"]
