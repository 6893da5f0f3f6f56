"""The delivery ledger: one row per reader, edition and message part.

A part is claimed (`sending`) before it goes out and marked `sent` after,
so a re-run skips what went out and resumes with the rest. A process that
dies between Telegram's answer and the `sent` mark leaves a `sending` row;
the next run sends that part again, because Telegram offers no way to ask
whether a message arrived. That window is one HTTP response wide.

Statuses: sending, sent, retry (transient failure: the next run tries
again), blocked (the reader is gone), failed (Telegram refused the part).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from infra import db
from infra.store import Store, utcnow

_LOGGER = logging.getLogger(__name__)

SENDING = "sending"
SENT = "sent"
RETRY = "retry"
BLOCKED = "blocked"
FAILED = "failed"
FINAL = frozenset({SENT, BLOCKED, FAILED})

# A part that failed this many times stops being retried and is marked failed.
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Claim:
    """The outcome of trying to claim one part for sending."""

    claimed: bool
    status: str
    attempts: int


class DeliveryLedger:
    """Reads and writes the `deliveries` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def freeze(
        self, reader_id: str, edition: str, parts: list[tuple[str, tuple[str, ...]]]
    ) -> list[tuple[str, tuple[str, ...]]]:
        """The edition's messages as first planned; `parts` if this is the first.

        A digest is rebuilt on every run, and a rebuilt one may split at other
        stories; sending its part 2 after the old part 1 would lose stories.
        """
        plans = db.delivery_plans
        where = (plans.c.reader_id == reader_id, plans.c.edition == edition)
        for _ in range(2):
            with self.store.begin() as conn:
                rows = conn.execute(
                    select(plans.c.body, plans.c.story_ids)
                    .where(*where)
                    .order_by(plans.c.part)
                ).all()
            if rows:
                return [(r.body, tuple(r.story_ids or ())) for r in rows]
            try:
                with self.store.begin() as conn:
                    now = utcnow()
                    conn.execute(
                        insert(plans),
                        [
                            {
                                "reader_id": reader_id,
                                "edition": edition,
                                "part": n,
                                "body": body,
                                "story_ids": list(ids),
                                "created_at": now,
                            }
                            for n, (body, ids) in enumerate(parts)
                        ],
                    )
                return parts
            except IntegrityError:
                continue  # another process planned it first: read theirs
        return parts

    def claim(
        self, reader_id: str, edition: str, part: int, story_ids: Iterable[str]
    ) -> Claim:
        """Take a part for sending unless it was sent or gave up before."""
        key = _key(reader_id, edition, part)
        now = utcnow()
        with self.store.begin() as conn:
            row = conn.execute(select(db.deliveries).where(*key)).first()
            if row is not None:
                if row.status in FINAL:
                    return Claim(False, row.status, row.attempts)
                if row.attempts >= MAX_ATTEMPTS:
                    conn.execute(
                        update(db.deliveries)
                        .where(*key)
                        .values(status=FAILED, updated_at=now)
                    )
                    return Claim(False, FAILED, row.attempts)
                # Only the claimer that still sees the old status wins the row.
                changed = conn.execute(
                    update(db.deliveries)
                    .where(*key, db.deliveries.c.status == row.status)
                    .where(db.deliveries.c.attempts == row.attempts)
                    .values(
                        status=SENDING,
                        attempts=row.attempts + 1,
                        story_ids=list(story_ids),
                        updated_at=now,
                    )
                )
                won = bool(changed.rowcount)
                return Claim(won, SENDING if won else row.status, row.attempts + 1)
        try:
            with self.store.begin() as conn:
                conn.execute(
                    insert(db.deliveries).values(
                        reader_id=reader_id,
                        edition=edition,
                        part=part,
                        status=SENDING,
                        story_ids=list(story_ids),
                        attempts=1,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            return Claim(False, SENDING, 1)
        return Claim(True, SENDING, 1)

    def mark(
        self,
        reader_id: str,
        edition: str,
        part: int,
        status: str,
        *,
        message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record how a claimed part ended."""
        values: dict[str, Any] = {"status": status, "updated_at": utcnow()}
        if message_id is not None:
            values["message_id"] = message_id
        values["error"] = error[:500] if error else None
        with self.store.begin() as conn:
            conn.execute(
                update(db.deliveries)
                .where(*_key(reader_id, edition, part))
                .values(**values)
            )

    def parts(self, reader_id: str, edition: str) -> list[dict[str, Any]]:
        query = (
            select(db.deliveries)
            .where(db.deliveries.c.reader_id == reader_id)
            .where(db.deliveries.c.edition == edition)
            .order_by(db.deliveries.c.part)
        )
        with self.store.begin() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def counts(self, edition: str) -> dict[str, int]:
        """How many parts of an edition are in each status."""
        query = select(db.deliveries.c.status).where(db.deliveries.c.edition == edition)
        with self.store.begin() as conn:
            return dict(Counter(row.status for row in conn.execute(query)))

    def latest_edition(self) -> str | None:
        query = (
            select(db.deliveries.c.edition)
            .order_by(db.deliveries.c.updated_at.desc())
            .limit(1)
        )
        with self.store.begin() as conn:
            row = conn.execute(query).first()
        return None if row is None else str(row.edition)


def _key(reader_id: str, edition: str, part: int) -> tuple[Any, ...]:
    return (
        db.deliveries.c.reader_id == reader_id,
        db.deliveries.c.edition == edition,
        db.deliveries.c.part == part,
    )
