"""Tables of the state store, in SQLAlchemy Core so SQLite and PostgreSQL share them.

Every table of the product is declared on `metadata` here; modules that
own a table import it from this file, so one `create_all` makes the whole
schema and the migration list in `infra.store` stays in one place.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
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

# Clustering -------------------------------------------------------------------
# A story is one event; its members are the items that tell it. Times are
# publication times of the members, so two runs give what one run gives.
stories = Table(
    "stories",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("title", Text, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("langs", JSON, nullable=False),
    Column("sources", JSON, nullable=False),
    Column("coverage", Integer, nullable=False, default=1),
    Column("member_count", Integer, nullable=False, default=1),
    # Bumped only when a member brings facts the story did not have.
    Column("revision", Integer, nullable=False, default=1),
    Column("revised_at", DateTime(timezone=True), nullable=True),
    Column("new_facts", JSON, nullable=False),
    Column("facts", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_stories_last_seen", "last_seen"),
)

story_members = Table(
    "story_members",
    metadata,
    Column("item_id", String(40), primary_key=True),
    Column("story_id", String(40), nullable=False, index=True),
    Column("sieve", String(20), nullable=False),
    Column("score", Float, nullable=True),
    Column("joined_at", DateTime(timezone=True), nullable=False),
    Column("source", String(200), nullable=False),
    Column("lang", String(8), nullable=False),
    Column("published", DateTime(timezone=True), nullable=False),
    Column("title", Text, nullable=False),
    # What the item is embedded as, so any index can (re)build its vector.
    Column("embed_text", Text, nullable=False),
    Column("minhash", LargeBinary, nullable=True),
    # Hashes of its sentences: a sentence a source repeats is boilerplate.
    Column("segments", JSON, nullable=False),
    Column("new_facts", JSON, nullable=False),
    # False until the member is in the remote (Upstash) index.
    Column("synced", Boolean, nullable=False, default=False),
    Index("ix_story_members_published", "published"),
)

# Every identity and copy key a clustered item is known by, hashed: URL,
# GUID and per-source keys (identity) and folded title and text (copy).
cluster_keys = Table(
    "cluster_keys",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("item_id", String(40), nullable=False),
    Column("story_id", String(40), nullable=False),
    Column("identity", Boolean, nullable=False, default=False),
    Column("published", DateTime(timezone=True), nullable=False, index=True),
)

# The local vector index: one unit vector per item and embedder.
cluster_vectors = Table(
    "cluster_vectors",
    metadata,
    Column("item_id", String(40), primary_key=True),
    Column("embedder", String(80), primary_key=True),
    Column("lang", String(8), nullable=False),
    Column("published", DateTime(timezone=True), nullable=False),
    Column("vector", LargeBinary, nullable=False),
    Index("ix_cluster_vectors_embedder_published", "embedder", "published"),
)

# LLM layer --------------------------------------------------------------------

# One row per request sent to a model vendor, priced when it ran.
llm_calls = Table(
    "llm_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("run_id", String(40), nullable=True),
    Column("stage", String(40), nullable=False),
    Column("provider", String(20), nullable=False),
    Column("model", String(80), nullable=False),
    Column("prompt_version", String(40), nullable=False, default=""),
    Column("source", String(200), nullable=True),
    Column("reader_id", String(40), nullable=True),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("cache_hit_tokens", Integer, nullable=False, default=0),
    Column("cache_miss_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("reasoning_tokens", Integer, nullable=False, default=0),
    Column("latency_ms", Integer, nullable=False, default=0),
    # ok | bad_output | refused | transient | error
    Column("outcome", String(20), nullable=False),
    Column("error", Text, nullable=True),
    # peak | off_peak | standard | unpriced | none (no answer to price)
    Column("tier", String(20), nullable=False),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Index("ix_llm_calls_at", "at"),
    Index("ix_llm_calls_reader", "reader_id", "at"),
)

# Validated model outputs by content hash, prompt version and model.
llm_cache = Table(
    "llm_cache",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("model", String(80), nullable=False),
    Column("prompt_version", String(40), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("provider", String(20), nullable=False),
    Column("stage", String(40), nullable=False),
    Column("value", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Editorial ----------------------------------------------------------------

# One checked summary per story, language, member set and prompt version:
# a story that gains no member is never summarized twice.
summaries = Table(
    "summaries",
    metadata,
    Column("story_id", String(40), primary_key=True),
    Column("lang", String(8), primary_key=True),
    Column("member_key", String(64), primary_key=True),
    Column("prompt_version", String(40), primary_key=True),
    Column("method", String(20), nullable=False),
    Column("provider", String(40), nullable=False, default=""),
    Column("verdict", String(20), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_summaries_story", "story_id"),
)

# The fact-check's verdict on each sentence of each draft, kept to be shown
# and to measure the writers.
fact_checks = Table(
    "fact_checks",
    metadata,
    Column("story_id", String(40), primary_key=True),
    Column("lang", String(8), primary_key=True),
    Column("member_key", String(64), primary_key=True),
    Column("prompt_version", String(40), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("sentence_index", Integer, primary_key=True),
    Column("sentence", Text, nullable=False),
    Column("verdict", String(20), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("evidence", Text, nullable=True),
    Column("item_ids", JSON, nullable=False),
    Column("writer", String(40), nullable=False, default=""),
    Column("checker", String(40), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Embedding cache ---------------------------------------------------------------
# `items.vector` keeps the item's unit vector; `vector_key` names the embedder
# and hashes the text it embedded (`infra.embedders.vector_key`), so a new
# embedder or an edited article is embedded again and nothing else ever is.
items.append_column(Column("vector_key", String(100), nullable=True))

# Bot (issue 6) ---------------------------------------------------------------

# Each story a reader was sent: a feedback tap finds its topic and source here,
# and ranking can leave out what a reader has already had.
delivered_stories = Table(
    "delivered_stories",
    metadata,
    Column("reader_id", String(40), primary_key=True),
    Column("story_id", String(40), primary_key=True),
    Column("edition", String(40), nullable=False),
    Column("headline", Text, nullable=False, default=""),
    Column("topics", JSON, nullable=False),
    Column("sources", JSON, nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=False),
)

# Telegram re-sends an update whose delivery failed; each update_id is handled once.
bot_updates = Table(
    "bot_updates",
    metadata,
    Column("update_id", BigInteger, primary_key=True, autoincrement=False),
    Column("received_at", DateTime(timezone=True), nullable=False, index=True),
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

# The messages of one reader's edition, fixed when its first part is sent: a
# re-run or a resumed broadcast sends the rest of that same digest, never
# parts of a digest rebuilt since.
delivery_plans = Table(
    "delivery_plans",
    metadata,
    Column("reader_id", String(40), primary_key=True),
    Column("edition", String(40), primary_key=True),
    Column("part", Integer, primary_key=True),
    Column("body", Text, nullable=False),
    Column("story_ids", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
