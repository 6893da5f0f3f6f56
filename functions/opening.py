"""An optional one-line personal opening for a reader's digest.

It is the first thing the budget guard turns off (`optional=True`), and
any failure simply leaves the digest without it.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel

from functions.chat import LANGUAGE_NAMES, ChatChain, has_model
from functions.claims import extract_numbers, number_supported
from functions.extractive import base_lang, split_sentences
from functions.models import DigestEntry
from functions.prompt_text import load_prompt, prompt_tag
from functions.summarize import LINK_OR_MARKUP
from functions.untrusted import fence, visible_text
from infra.config import Settings
from infra.llm import LLMError
from infra.readers import Reader

_LOGGER = logging.getLogger(__name__)

MAX_CHARS = {"en": 180, "zh": 60}
HEADLINES = 5


class OpeningOut(BaseModel):
    line: str


async def opening_line(
    chain: ChatChain | None,
    reader: Reader,
    entries: list[DigestEntry],
    *,
    settings: Settings,
) -> str:
    """One sentence from the reader's top headlines and topics, or ""."""
    if not settings.opening_line or not entries or not has_model(chain):
        return ""
    assert chain is not None
    lang = base_lang(reader.lang)
    headlines = [visible_text(e.summary.headline) for e in entries[:HEADLINES]]
    prompt = load_prompt("opening")
    try:
        result = await chain.complete_json(
            OpeningOut,
            stage="opening",
            system=prompt.system,
            user=prompt.render(
                language=LANGUAGE_NAMES.get(lang, lang),
                topics=fence(", ".join(reader.topics) or "China news in general"),
                headlines="\n".join(f"- {fence(h)}" for h in headlines),
            ),
            prompt_version=prompt_tag(prompt),
            reader_id=reader.id,
            optional=True,
            max_tokens=120,
        )
    except LLMError as exc:
        _LOGGER.info("no opening line for reader %s: %s", reader.id, exc)
        return ""
    return _usable(result.value.line, headlines, lang)


def _usable(line: str, headlines: list[str], lang: str) -> str:
    """The first sentence, if it is short, has no link and no number of its own."""
    sentences = split_sentences(visible_text(line))
    if not sentences:
        return ""
    first = sentences[0]
    if len(first) > MAX_CHARS.get(lang, MAX_CHARS["en"]) or LINK_OR_MARKUP.search(
        first
    ):
        return ""
    known = extract_numbers(" ".join(headlines))
    if any(not number_supported(n, known) for n in extract_numbers(first)):
        return ""
    return first
