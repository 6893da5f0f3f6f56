"""Tables of the state store, in SQLAlchemy Core so SQLite and PostgreSQL share them.

Every table of the product is declared on `metadata` here; modules that
own a table import it from this file, so one `create_all` makes the whole
schema and the migration list in `infra.store` stays in one place.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

items = Table(
    "items",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("source", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("guid", Text, nullable=False, default=""),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("lang", String(8), nullable=False),
    Column("published", DateTime(timezone=True), nullable=False),
    Column("published_estimated", Boolean, nullable=False, default=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("title_hash", String(64), nullable=False),
    Column("vector", JSON, nullable=True),
    Index("ix_items_published", "published"),
    Index("ix_items_source", "source"),
)

# Every identity an item is known by: canonical URL, GUID, title hash.
# An incoming article matching any key is the same item, updated in place.
item_keys = Table(
    "item_keys",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("item_id", String(40), nullable=False, index=True),
)

source_state = Table(
    "source_state",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("etag", Text, nullable=True),
    Column("last_modified", Text, nullable=True),
    Column("last_success", DateTime(timezone=True), nullable=True),
    Column("last_attempt", DateTime(timezone=True), nullable=True),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("last_status", String(40), nullable=True),
    Column("newest_item", DateTime(timezone=True), nullable=True),
    Column("paused_until", DateTime(timezone=True), nullable=True),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("status", String(20), nullable=False),
    Column("report", JSON, nullable=True),
)

stories = Table(
    "stories",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("title", Text, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("langs", JSON, nullable=False),
    Column("coverage", Integer, nullable=False, default=1),
    Column("member_count", Integer, nullable=False, default=1),
    Column("vector", JSON, nullable=True),
)

story_members = Table(
    "story_members",
    metadata,
    Column("item_id", String(40), primary_key=True),
    Column("story_id", String(40), nullable=False, index=True),
    Column("sieve", String(20), nullable=False),
    Column("score", Float, nullable=True),
    Column("joined_at", DateTime(timezone=True), nullable=False),
)

readers = Table(
    "readers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("chat_id", String(40), nullable=False, unique=True),
    Column("lang", String(8), nullable=False, default="en"),
    Column("topics", JSON, nullable=False),
    Column("muted_topics", JSON, nullable=False),
    Column("digest_size", Integer, nullable=False, default=8),
    Column("delivery_hour", Integer, nullable=False, default=8),
    Column("timezone", String(64), nullable=False, default="Asia/Shanghai"),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# One row per distinct tap: a repeated tap hits the primary key and changes nothing.
feedback = Table(
    "feedback",
    metadata,
    Column("reader_id", String(40), primary_key=True),
    Column("story_id", String(40), primary_key=True),
    Column("action", String(20), primary_key=True),
    Column("topic", String(100), primary_key=True, default=""),
    Column("source", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One row per message of an edition for a reader: the exactly-once ledger.
deliveries = Table(
    "deliveries",
    metadata,
    Column("reader_id", String(40), primary_key=True),
    Column("edition", String(40), primary_key=True),
    Column("part", Integer, primary_key=True),
    Column("status", String(20), nullable=False),
    Column("story_ids", JSON, nullable=False),
    Column("message_id", String(40), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# --- ops: leases, webhook de-duplication -------------------------------------

# A named lease: at most one holder until `expires_at`. Taken by an atomic
# insert or a conditional update (see `infra.lease`), so two schedulers or
# a retried container can never run the same job at once.
leases = Table(
    "leases",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Keys already handled (Telegram `update_id`s, alert keys): the primary key
# makes "first time?" one atomic insert on both engines.
seen_keys = Table(
    "seen_keys",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("seen_at", DateTime(timezone=True), nullable=False, index=True),
)
