"""The state store: one implementation for SQLite (embedded) and PostgreSQL.

Only SQL that both engines run is written here. Schema changes are
numbered migrations applied in order and recorded in `schema_version`.

Concurrency: the cron job and the webhook write at the same time. On
PostgreSQL migrations serialize on an advisory lock; on SQLite every
transaction starts with `BEGIN IMMEDIATE`, so writers queue on the busy
timeout instead of failing with "database is locked" when a read turns
into a write.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Row

from functions.models import Item
from infra import db

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

# Identity keys that decide alone; title and content keys must also agree in time.
_STRONG_KEYS = ("url:", "guid:")
WEAK_MATCH_WINDOW = timedelta(days=2)
_KEY_CHARS = 300
# Any constant works; it only has to be the same in every process.
_MIGRATION_LOCK_KEY = 7_302_461


def _initial_schema(conn: Connection) -> None:
    db.metadata.create_all(conn, checkfirst=True)


def _editorial_tables(conn: Connection) -> None:
    db.summaries.create(conn, checkfirst=True)
    db.fact_checks.create(conn, checkfirst=True)


def _clustering_schema(conn: Connection) -> None:
    """Story tables as the clusterer writes them; the skeleton's were never written."""
    columns = {c["name"] for c in inspect(conn).get_columns("stories")}
    if "revision" not in columns:
        conn.execute(text("DROP TABLE IF EXISTS story_members"))
        conn.execute(text("DROP TABLE IF EXISTS stories"))
    db.metadata.create_all(conn, checkfirst=True)


def _vector_key_column(conn: Connection) -> None:
    """Stores made before the embedding cache get `items.vector_key`."""
    columns = {c["name"] for c in inspect(conn).get_columns("items")}
    if "vector_key" not in columns:
        conn.execute(text("ALTER TABLE items ADD COLUMN vector_key VARCHAR(100)"))


def _bot_tables(conn: Connection) -> None:
    db.delivered_stories.create(conn, checkfirst=True)
    db.bot_updates.create(conn, checkfirst=True)


def _ops_tables(conn: Connection) -> None:
    db.leases.create(conn, checkfirst=True)
    db.seen_keys.create(conn, checkfirst=True)


def _delivery_plans(conn: Connection) -> None:
    db.delivery_plans.create(conn, checkfirst=True)


# (version, description, step). Append only; never edit a released step.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _initial_schema),
    (2, "summaries and fact checks", _editorial_tables),
    (3, "clustering: stories, members, keys, local vectors", _clustering_schema),
    (4, "embedding cache: items.vector_key", _vector_key_column),
    (5, "delivered stories and seen bot updates", _bot_tables),
    (6, "leases and seen keys", _ops_tables),
    (7, "delivery plans", _delivery_plans),
]


def in_chunks(values: Sequence[T], size: int = 500) -> list[list[T]]:
    """Slices for IN (...) lists, which SQLite caps in length."""
    return [list(values[k : k + size]) for k in range(0, len(values), size)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _stored_key(key: str) -> str:
    """An identity key short enough for its column (long URLs are hashed)."""
    if len(key) <= _KEY_CHARS:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return key[: _KEY_CHARS - 65] + "#" + digest


@dataclass
class UpsertResult:
    new: list[str]
    updated: list[str]
    unchanged: list[str]


class Store:
    """Everything the product persists, behind one small interface."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or _make_engine(url)
        self.migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def migrate(self) -> int:
        """Apply pending migrations; returns the schema version now in force."""
        with self.begin() as conn:
            if self.dialect == "postgresql":
                # Two containers starting on a fresh database would both
                # create the tables; the second waits here instead.
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": _MIGRATION_LOCK_KEY},
                )
            db.schema_version.create(conn, checkfirst=True)
            done = {r.version for r in conn.execute(select(db.schema_version))}
            for version, description, step in MIGRATIONS:
                if version in done:
                    continue
                _LOGGER.info("applying migration %d: %s", version, description)
                step(conn)
                conn.execute(
                    insert(db.schema_version).values(
                        version=version, applied_at=utcnow()
                    )
                )
                done.add(version)
        return max(done)

    def close(self) -> None:
        self.engine.dispose()

    # items -----------------------------------------------------------------

    def upsert_items(self, incoming: Iterable[Item]) -> UpsertResult:
        """Store items by identity: a known key means the same item.

        Fetching the same feed twice adds nothing; a changed GUID, a new
        title or a tracking parameter updates the stored item in place.
        URL and GUID keys decide at once. A title or content key only
        matches an item published within `WEAK_MATCH_WINDOW`, so a column
        that reuses its headline every day is not one item forever.
        """
        result = UpsertResult(new=[], updated=[], unchanged=[])
        now = utcnow()
        with self.begin() as conn:
            for item in incoming:
                existing_id = self._match(conn, item)
                if existing_id is None:
                    item.id = self._free_id(conn, item)
                    self._insert_item(conn, item, now)
                    result.new.append(item.id)
                    continue

                item.id = existing_id
                row = conn.execute(
                    select(db.items).where(db.items.c.id == existing_id)
                ).one()
                self._add_keys(conn, existing_id, item.keys)
                # Keep first-seen and publication time: a re-dated copy is not news.
                values: dict[str, Any] = {}
                if row.content_hash != item.content_hash or row.title != item.title:
                    values.update(
                        title=item.title,
                        text=item.text,
                        url=item.url,
                        guid=item.guid,
                        content_hash=item.content_hash,
                        title_hash=item.title_hash,
                    )
                if row.published_estimated and not item.published_estimated:
                    values.update(published=item.published, published_estimated=False)
                if not values:
                    result.unchanged.append(existing_id)
                    continue
                conn.execute(
                    update(db.items)
                    .where(db.items.c.id == existing_id)
                    .values(updated_at=now, **values)
                )
                result.updated.append(existing_id)
        return result

    def _match(self, conn: Connection, item: Item) -> str | None:
        """The stored item this one is, trying its keys strongest first."""
        keys = [_stored_key(k) for k in item.keys]
        if not keys:
            return None
        rows = conn.execute(
            select(db.item_keys.c.key, db.item_keys.c.item_id).where(
                db.item_keys.c.key.in_(keys)
            )
        ).all()
        found = {r.key: str(r.item_id) for r in rows}
        for key in keys:
            item_id = found.get(key)
            if item_id is None:
                continue
            if key.startswith(_STRONG_KEYS) or self._close_in_time(conn, item_id, item):
                return item_id
        return None

    def _close_in_time(self, conn: Connection, item_id: str, item: Item) -> bool:
        row = conn.execute(
            select(db.items.c.published, db.items.c.published_estimated).where(
                db.items.c.id == item_id
            )
        ).first()
        if row is None:
            return False
        if row.published_estimated or item.published_estimated:
            return True
        stored = as_utc(row.published) or item.published
        return abs(stored - item.published) <= WEAK_MATCH_WINDOW

    def _free_id(self, conn: Connection, item: Item) -> str:
        """The item's id, or a derived one if an unrelated item already holds it."""
        candidate = item.id
        for attempt in range(1, 100):
            taken = conn.execute(
                select(db.items.c.id).where(db.items.c.id == candidate)
            ).first()
            if taken is None:
                return candidate
            seed = f"{candidate}|{item.published.isoformat()}|{attempt}"
            candidate = "i" + hashlib.sha1(seed.encode("utf-8")).hexdigest()[:19]
        raise RuntimeError(f"no free id for item {item.id}")

    def _add_keys(self, conn: Connection, item_id: str, keys: list[str]) -> None:
        stored = list(dict.fromkeys(_stored_key(k) for k in keys))
        if not stored:
            return
        known = {
            r.key
            for r in conn.execute(
                select(db.item_keys.c.key).where(db.item_keys.c.key.in_(stored))
            )
        }
        fresh = [{"key": k, "item_id": item_id} for k in stored if k not in known]
        if fresh:
            conn.execute(insert(db.item_keys), fresh)

    def _insert_item(self, conn: Connection, item: Item, now: datetime) -> None:
        conn.execute(
            insert(db.items).values(
                id=item.id,
                source=item.source,
                url=item.url,
                guid=item.guid,
                title=item.title,
                text=item.text,
                lang=item.lang,
                published=item.published,
                published_estimated=item.published_estimated,
                first_seen=item.first_seen or now,
                updated_at=now,
                content_hash=item.content_hash,
                title_hash=item.title_hash,
            )
        )
        self._add_keys(conn, item.id, item.keys)

    def get_items(self, ids: Iterable[str]) -> list[Item]:
        wanted = list(ids)
        if not wanted:
            return []
        with self.begin() as conn:
            rows = conn.execute(select(db.items).where(db.items.c.id.in_(wanted))).all()
        by_id = {r.id: _row_to_item(r) for r in rows}
        return [by_id[i] for i in wanted if i in by_id]

    def list_items(
        self,
        *,
        source: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Item]:
        query = select(db.items).order_by(db.items.c.published.desc(), db.items.c.id)
        if source:
            query = query.where(db.items.c.source == source)
        if since:
            query = query.where(db.items.c.published >= as_utc(since))
        if limit:
            query = query.limit(limit)
        with self.begin() as conn:
            return [_row_to_item(r) for r in conn.execute(query)]

    def count_items(self) -> int:
        with self.begin() as conn:
            return int(
                conn.execute(select(func.count()).select_from(db.items)).scalar_one()
            )

    # sources ---------------------------------------------------------------

    def get_source_state(self, name: str) -> dict[str, Any]:
        with self.begin() as conn:
            row = conn.execute(
                select(db.source_state).where(db.source_state.c.name == name)
            ).first()
        if row is None:
            return {"name": name, "consecutive_failures": 0}
        state = dict(row._mapping)
        for key in ("last_success", "last_attempt", "newest_item", "paused_until"):
            state[key] = as_utc(state[key])
        return state

    def save_source_state(self, name: str, **values: Any) -> None:
        with self.begin() as conn:
            exists = conn.execute(
                select(db.source_state.c.name).where(db.source_state.c.name == name)
            ).first()
            if exists:
                conn.execute(
                    update(db.source_state)
                    .where(db.source_state.c.name == name)
                    .values(**values)
                )
            else:
                values.setdefault("consecutive_failures", 0)
                conn.execute(insert(db.source_state).values(name=name, **values))

    def all_source_states(self) -> list[dict[str, Any]]:
        with self.begin() as conn:
            return [dict(r._mapping) for r in conn.execute(select(db.source_state))]

    # runs ------------------------------------------------------------------

    def save_run(
        self,
        run_id: str,
        kind: str,
        status: str,
        report: dict[str, Any],
        started_at: datetime,
        finished_at: datetime | None = None,
    ) -> None:
        with self.begin() as conn:
            exists = conn.execute(
                select(db.runs.c.id).where(db.runs.c.id == run_id)
            ).first()
            values = dict(
                kind=kind,
                status=status,
                report=report,
                started_at=started_at,
                finished_at=finished_at,
            )
            if exists:
                conn.execute(
                    update(db.runs).where(db.runs.c.id == run_id).values(**values)
                )
            else:
                conn.execute(insert(db.runs).values(id=run_id, **values))

    def recent_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        query = (
            select(db.runs)
            .order_by(db.runs.c.started_at.desc(), db.runs.c.id.desc())
            .limit(limit)
        )
        with self.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["started_at"] = as_utc(row["started_at"])
            row["finished_at"] = as_utc(row["finished_at"])
        return rows


def _row_to_item(row: Row[Any]) -> Item:
    return Item(
        id=row.id,
        source=row.source,
        url=row.url,
        guid=row.guid,
        title=row.title,
        text=row.text,
        lang=row.lang,
        published=as_utc(row.published) or utcnow(),
        published_estimated=bool(row.published_estimated),
        first_seen=as_utc(row.first_seen),
        content_hash=row.content_hash,
        title_hash=row.title_hash,
    )


def _use_wal(cursor: Any) -> None:
    """Switch a new SQLite file to WAL; the mode is stored in the file itself.

    Switching ignores the busy timeout, so connections racing to open a fresh
    file retry here for a few seconds instead of failing.
    """
    for _ in range(100):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error):
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA journal_mode=WAL")


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Take BEGIN away from the sqlite3 driver so `_begin` can say IMMEDIATE.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            _use_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No server-side prepared statements: a transaction-mode pooler (Neon's,
    # Supabase's PgBouncer) may hand each transaction a different backend.
    connect_args = {"prepare_threshold": None} if "+psycopg" in url else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def open_store(url: str | None = None) -> Store:
    """Open the configured store (DATABASE_URL, else the DIGEST_DB SQLite file)."""
    if url is None:
        from infra.config import get_settings

        url = get_settings().store_url
    return Store(url)
