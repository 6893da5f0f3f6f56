"""Readers and their profiles, as stored; ranking and the bot both read these."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update

from infra import db
from infra.store import Store, utcnow


@dataclass
class Reader:
    id: str
    chat_id: str
    lang: str = "en"
    topics: list[str] = field(default_factory=list)
    muted_topics: list[str] = field(default_factory=list)
    digest_size: int = 8
    delivery_hour: int = 8
    timezone: str = "Asia/Shanghai"
    active: bool = True


def reader_id_for(chat_id: str | int) -> str:
    """A stable id that does not reveal the chat id in logs."""
    return "r" + hashlib.sha256(f"reader:{chat_id}".encode()).hexdigest()[:15]


def _to_reader(row: Any) -> Reader:
    return Reader(
        id=row.id,
        chat_id=row.chat_id,
        lang=row.lang,
        topics=list(row.topics or []),
        muted_topics=list(row.muted_topics or []),
        digest_size=row.digest_size,
        delivery_hour=row.delivery_hour,
        timezone=row.timezone,
        active=bool(row.active),
    )


def save_reader(store: Store, reader: Reader) -> Reader:
    """Insert or update by chat id; returns the stored reader."""
    now = utcnow()
    values = dict(
        lang=reader.lang,
        topics=reader.topics,
        muted_topics=reader.muted_topics,
        digest_size=reader.digest_size,
        delivery_hour=reader.delivery_hour,
        timezone=reader.timezone,
        active=reader.active,
        updated_at=now,
    )
    with store.begin() as conn:
        row = conn.execute(
            select(db.readers.c.id).where(db.readers.c.chat_id == reader.chat_id)
        ).first()
        if row:
            reader.id = row.id
            conn.execute(
                update(db.readers).where(db.readers.c.id == row.id).values(**values)
            )
        else:
            reader.id = reader.id or reader_id_for(reader.chat_id)
            conn.execute(
                insert(db.readers).values(
                    id=reader.id, chat_id=reader.chat_id, created_at=now, **values
                )
            )
    return reader


def get_reader(
    store: Store, *, chat_id: str | int | None = None, reader_id: str | None = None
) -> Reader | None:
    query = select(db.readers)
    if chat_id is not None:
        query = query.where(db.readers.c.chat_id == str(chat_id))
    elif reader_id is not None:
        query = query.where(db.readers.c.id == reader_id)
    else:
        raise ValueError("give chat_id or reader_id")
    with store.begin() as conn:
        row = conn.execute(query).first()
    return None if row is None else _to_reader(row)


def list_readers(
    store: Store, *, active_only: bool = False, ids: list[str] | None = None
) -> list[Reader]:
    """Readers in the order they came; only `ids` when given (a delivery batch)."""
    query = select(db.readers).order_by(db.readers.c.created_at, db.readers.c.id)
    if active_only:
        query = query.where(db.readers.c.active.is_(True))
    if ids is not None:
        query = query.where(db.readers.c.id.in_(ids))
    with store.begin() as conn:
        return [_to_reader(r) for r in conn.execute(query)]


def remove_reader(store: Store, chat_id: str | int) -> bool:
    with store.begin() as conn:
        result = conn.execute(
            delete(db.readers).where(db.readers.c.chat_id == str(chat_id))
        )
    return bool(result.rowcount)


def set_active(store: Store, reader_id: str, active: bool) -> None:
    with store.begin() as conn:
        conn.execute(
            update(db.readers)
            .where(db.readers.c.id == reader_id)
            .values(active=active, updated_at=utcnow())
        )
