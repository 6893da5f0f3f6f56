"""The optional personal opening line (issue 5)."""

from __future__ import annotations

from functions.models import DigestEntry, Summary
from functions.opening import opening_line
from infra.config import Settings
from infra.readers import Reader
from tests.editorial_fakes import FakeChain, item, story

READER = Reader(id="r1", chat_id="1", topics=["trade", "chips"])


def _entries() -> list[DigestEntry]:
    entries = []
    for n, headline in enumerate(["Exports rise 8.3% in February", "Chip plant opens"]):
        s = story(f"s{n}", item(f"i{n}", headline + "."))
        summary = Summary(story_id=s.id, lang="en", headline=headline, sentences=["x."])
        entries.append(DigestEntry(story=s, summary=summary, links=[]))
    return entries


def _says(line: str) -> FakeChain:
    return FakeChain(opening=lambda _user: {"line": line})


async def test_opening_line_is_an_optional_per_reader_call() -> None:
    chain = _says("Good morning: exports rose 8.3% and a chip plant opened.")

    line = await opening_line(chain, READER, _entries(), settings=Settings())

    assert line == "Good morning: exports rose 8.3% and a chip plant opened."
    call = chain.calls[0]
    assert (call["stage"], call["optional"], call["reader_id"]) == (
        "opening",
        True,
        "r1",
    )
    assert "- Exports rise 8.3% in February" in call["user"]
    assert "trade, chips" in call["user"]


async def test_budget_guard_refusal_leaves_the_digest_without_it() -> None:
    chain = FakeChain(opening=None)

    assert await opening_line(chain, READER, _entries(), settings=Settings()) == ""


async def test_turned_off_or_nothing_to_open_makes_no_call() -> None:
    chain = _says("Hello.")

    off = await opening_line(
        chain, READER, _entries(), settings=Settings(DIGEST_OPENING_LINE=False)
    )
    empty = await opening_line(chain, READER, [], settings=Settings())

    assert off == empty == ""
    assert chain.calls == []


async def test_only_the_first_short_sentence_without_links_or_new_numbers() -> None:
    settings = Settings()

    two = await opening_line(
        _says("Trade leads today. Also chips."), READER, _entries(), settings=settings
    )
    link = await opening_line(
        _says("Read https://evil.example today."), READER, _entries(), settings=settings
    )
    invented = await opening_line(
        _says("Exports rose 12% today."), READER, _entries(), settings=settings
    )

    assert two == "Trade leads today."
    assert link == ""
    assert invented == ""
