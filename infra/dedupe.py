"""Work done once per key: Telegram re-sends updates whose delivery failed.

The port is one question, `await seen.claim(key)`: True the first time a
key is offered, False ever after (within the retention). Two backends:

* `StoreSeenKeys`, the default: one INSERT into `seen_keys`; the primary
  key makes the answer atomic on SQLite and PostgreSQL.
* `DictSeenKeys`, for a `modal.Dict` (or anything with the same
  `put(key, value, skip_if_exists=True) -> bool`). Modal drops entries left
  untouched for seven days, which is harmless here: Telegram stops
  re-sending an update within a day.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from infra import db
from infra.store import Store, utcnow

_LOGGER = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(days=2)
_PRUNE_EVERY = 500


class SeenKeys(Protocol):
    async def claim(self, key: str) -> bool:
        """True the first time `key` is claimed, False for every repeat."""
        ...


def update_key(update_id: int) -> str:
    """The de-duplication key of a Telegram update."""
    return f"tg-update:{update_id}"


class StoreSeenKeys:
    """Seen keys in the state store, pruned after `retention`."""

    def __init__(self, store: Store, *, retention: timedelta = DEFAULT_RETENTION):
        self.store = store
        self.retention = retention
        self._claims = 0

    def claim_sync(self, key: str) -> bool:
        """The blocking form of `claim`, for code that is not async."""
        now = utcnow()
        try:
            with self.store.begin() as conn:
                conn.execute(insert(db.seen_keys).values(key=key, seen_at=now))
        except IntegrityError:
            _LOGGER.info("duplicate key %s ignored", key)
            return False

        self._claims += 1
        if self._claims % _PRUNE_EVERY == 0:
            self.prune()
        return True

    async def claim(self, key: str) -> bool:
        return await asyncio.to_thread(self.claim_sync, key)

    def prune(self, *, now: datetime | None = None) -> int:
        """Forget keys older than the retention; returns how many went."""
        cutoff = (now or utcnow()) - self.retention
        with self.store.begin() as conn:
            result = conn.execute(
                delete(db.seen_keys).where(db.seen_keys.c.seen_at < cutoff)
            )
        return int(result.rowcount or 0)


class DictSeenKeys:
    """Seen keys in a `modal.Dict`: `put(..., skip_if_exists=True)` is atomic."""

    def __init__(self, mapping: Any) -> None:
        self.mapping = mapping

    async def claim(self, key: str) -> bool:
        created = await self.mapping.put.aio(
            key, utcnow().isoformat(), skip_if_exists=True
        )
        if not created:
            _LOGGER.info("duplicate key %s ignored", key)
        return bool(created)
