"""Named leases in the state store: one holder of a job at a time.

A lease is taken by one atomic statement, so it holds on SQLite and on
PostgreSQL alike, across containers and machines:

* a conditional UPDATE takes over a lease that has expired, or renews one
  the same holder already has (a retried Modal input keeps its call id);
* failing that, an INSERT creates it, and the primary key lets exactly one
  of several concurrent inserters win.

Expiry is judged by the caller's clock. Containers run NTP-synced clocks
and TTLs are minutes long, so a second of skew changes nothing; a holder
that dies simply lets its lease run out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from infra import db
from infra.store import Store, as_utc, utcnow

_LOGGER = logging.getLogger(__name__)


def acquire(
    store: Store,
    name: str,
    ttl_s: float,
    holder: str,
    *,
    now: datetime | None = None,
) -> bool:
    """Take or renew lease `name` for `ttl_s` seconds; False if another holds it."""
    now = (now or utcnow()).astimezone(UTC)
    expires = now + timedelta(seconds=ttl_s)
    table = db.leases

    with store.begin() as conn:
        taken = conn.execute(
            update(table)
            .where(table.c.name == name)
            .where(or_(table.c.expires_at <= now, table.c.holder == holder))
            .values(
                acquired_at=case(
                    (table.c.holder == holder, table.c.acquired_at), else_=now
                ),
                holder=holder,
                expires_at=expires,
            )
        ).rowcount
    if taken == 1:
        _LOGGER.debug("lease %s taken over or renewed by %s", name, holder)
        return True

    try:
        with store.begin() as conn:
            conn.execute(
                insert(table).values(
                    name=name, holder=holder, acquired_at=now, expires_at=expires
                )
            )
    except IntegrityError:
        _LOGGER.info("lease %s is held by another run", name)
        return False
    _LOGGER.debug("lease %s created for %s", name, holder)
    return True


def release(store: Store, name: str, holder: str) -> bool:
    """Give lease `name` back; only its holder can, so a late finisher is harmless."""
    with store.begin() as conn:
        result = conn.execute(
            delete(db.leases)
            .where(db.leases.c.name == name)
            .where(db.leases.c.holder == holder)
        )
    return bool(result.rowcount)


def holder_of(store: Store, name: str, *, now: datetime | None = None) -> str | None:
    """Who holds lease `name` now, or None when it is free or expired."""
    now = now or utcnow()
    with store.begin() as conn:
        row = conn.execute(select(db.leases).where(db.leases.c.name == name)).first()
    if row is None or (as_utc(row.expires_at) or now) <= now:
        return None
    return str(row.holder)


@contextmanager
def held(store: Store, name: str, ttl_s: float, holder: str) -> Iterator[bool]:
    """Hold lease `name` for the block; yields False when another run has it."""
    got = acquire(store, name, ttl_s, holder)
    try:
        yield got
    finally:
        if got:
            release(store, name, holder)
