"""The editorial stage end to end: per-reader digests with checked summaries."""

from __future__ import annotations

from datetime import timedelta

from functions.editorial import EditorialReport, build_digests
from functions.models import Source
from infra.config import Settings
from infra.readers import Reader
from tests.editorial_fakes import (
    T0,
    FakeChain,
    careful_checker,
    item,
    lead_writer,
    story,
    trade_items,
)


async def test_each_reader_gets_a_digest_and_a_quiet_reader_gets_a_note(store) -> None:
    trade_members = trade_items()
    rail = item("r1", "A new high-speed railway section opened in Guizhou on Monday.")
    stories = [story("trade", *trade_members), story("rail", rail)]
    items_by_id = {i.id: i for i in [*trade_members, rail]}
    store.upsert_items(items_by_id.values())
    chain = FakeChain(
        summarize=lead_writer,
        factcheck=careful_checker,
        opening=lambda _user: {"line": "Trade leads today."},
    )
    readers = [
        Reader(id="en", chat_id="1", topics=["trade"]),
        Reader(id="zh", chat_id="2", lang="zh", topics=["贸易"]),
        Reader(id="nobody", chat_id="3", topics=["football"]),
        Reader(id="gone", chat_id="4", active=False),
    ]
    report = EditorialReport()

    digests = await build_digests(
        store,
        chain,
        stories,
        items_by_id,
        readers,
        now=T0 + timedelta(hours=3),
        edition="2026-03-02",
        settings=Settings(),
        sources={"Harbor Wire": Source(name="Harbor Wire", url="", label="HW")},
        report=report,
    )

    by_reader = {d.reader_id: d for d in digests}
    assert sorted(by_reader) == ["en", "nobody", "zh"]
    assert [e.story.id for e in by_reader["en"].entries] == ["trade"]
    assert by_reader["en"].opening == "Trade leads today."
    assert by_reader["en"].entries[0].summary.verdict == "verified"
    assert by_reader["zh"].entries[0].summary.lang == "zh"
    assert by_reader["nobody"].entries == []
    assert by_reader["nobody"].opening.startswith("Nothing today")
    assert len(chain.stage_calls("summarize")) == 4
    assert report.as_dict()["quiet_days"] == 1
