"""The extractive summary: an article's own lead sentences, faithful by construction.

It is the summary when no model is available, and the fallback when a
model's summary fails its fact-check. English sentences end with . ! or ?
before a space; Chinese ones end with 。！？ (closing quotes stay attached).
"""

from __future__ import annotations

import re

from functions.models import Item, KeyFact, Story, Summary
from functions.topics import infer_topics
from functions.untrusted import article_text

# A sentence longer than this is cut at a clause boundary and marked with "…".
MAX_SENTENCE_CHARS = 320


# Chinese ends a sentence with 。！？, optionally followed by closing quotes
# or brackets; no space is needed after it.
_ZH_END = re.compile(r"[。！？][”’」』）)】]*")
# A Latin sentence ends with . ! ? (and closing quotes) followed by a space
# and something that can start a sentence.
_EN_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9\u3400-\u9fff])")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof gen col lt sgt rep sen gov st jr sr inc ltd co corp "
    "no vs etc jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k u.n "
    "e.g i.e a.m p.m".split()
)
_CLAUSE_BREAKS = "，；、,;:："


def base_lang(lang: str) -> str:
    """`zh-CN`, `zh_Hant` and `ZH` are all `zh`."""
    return re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0] or "en"


def clean_text(text: str) -> str:
    """Plain text from what a feed gave: what a browser would show, on one line,
    without sentences that address a model."""
    return article_text(text)


def split_sentences(text: str) -> list[str]:
    """Split English and Chinese (also mixed) text into sentences, keeping ends."""
    text = clean_text(text)
    ends = {m.end() for m in _ZH_END.finditer(text)}
    ends |= {m.end() for m in _EN_END.finditer(text) if not _is_abbreviation(text, m)}
    sentences: list[str] = []
    start = 0
    for end in sorted(ends):
        piece = text[start:end].strip()
        if piece:
            sentences.append(piece)
        start = end
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def _is_abbreviation(text: str, match: re.Match[str]) -> bool:
    """A period after `U.S`, `Mr` or a single initial does not end a sentence."""
    if text[match.start()] != ".":
        return False
    word = re.search(r"([A-Za-z][A-Za-z.]*)$", text[: match.start()])
    if word is None:
        return False
    token = word.group(1).lower().rstrip(".")
    return token in _ABBREVIATIONS or len(token) == 1


def cap_sentence(sentence: str, limit: int = MAX_SENTENCE_CHARS) -> str:
    """Shorten a run-on sentence at its last clause break (or word) before `limit`."""
    if len(sentence) <= limit:
        return sentence
    head = sentence[:limit]
    cut = max(head.rfind(mark) for mark in _CLAUSE_BREAKS)
    if cut < limit // 2:
        cut = head.rfind(" ")
    if cut < limit // 2:
        cut = limit
    return head[:cut].rstrip(" ,;:，；、：") + "…"


def _pick_lead_item(items: list[Item]) -> Item:
    """The member that tells the most: longest text, then earliest, then id."""
    return min(
        items,
        key=lambda i: (-len(clean_text(i.text)), i.published, i.id),
    )


def _same_as_title(sentence: str, title: str) -> bool:
    norm = re.compile(r"[\W_]+")
    a = norm.sub("", sentence.lower())
    b = norm.sub("", title.lower())
    if not a:
        return False
    return a == b or (len(b) > 8 and a.startswith(b) and len(a) < len(b) + 4)


def importance_from_coverage(story: Story) -> float:
    """More independent sources, more important: 1 → 0.4, 3 → 0.6, 6+ → 0.9."""
    return round(min(0.9, 0.3 + 0.1 * max(1, story.coverage)), 2)


def extractive_summary(
    story: Story, items: list[Item], lang: str, max_sentences: int = 3
) -> Summary:
    """Lead sentences of the story's best member in `lang` (another language if none).

    When no member is written in `lang`, the summary is still made, from a
    member in another language, and `text_lang` says which one it is.
    """
    lang = base_lang(lang)
    members = [i for i in items if i.id in set(story.member_ids)] or list(items)
    in_lang = [i for i in members if base_lang(i.lang) == lang]
    candidates = in_lang or members
    if not candidates:
        return Summary(
            story_id=story.id,
            lang=lang,
            headline=clean_text(story.title),
            sentences=[],
            importance=importance_from_coverage(story),
            method="extractive",
        )

    lead = _pick_lead_item(candidates)
    title = clean_text(lead.title) or clean_text(story.title)
    sentences = [
        cap_sentence(s)
        for s in split_sentences(lead.text)
        if not _same_as_title(s, title)
    ][: max(1, max_sentences)]
    if not sentences and title:
        sentences = [title]

    text_lang = "" if in_lang else base_lang(lead.lang)
    return Summary(
        story_id=story.id,
        lang=lang,
        headline=title,
        sentences=sentences,
        key_facts=[KeyFact(text=s, item_ids=[lead.id]) for s in sentences],
        topics=infer_topics(" ".join([title, *sentences])),
        importance=importance_from_coverage(story),
        method="extractive",
        text_lang=text_lang,
    )
