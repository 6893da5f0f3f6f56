"""Text folding, character n-gram hashing and fact tokens for the clustering sieves.

Folding makes two renderings of one text compare equal: NFKC turns
full-width forms into half-width ones, OpenCC turns Traditional into
Simplified script (so a Hong Kong or Taiwan copy meets the mainland
one), case and punctuation are dropped. Character n-grams need no word
segmentation, which is what lets Chinese and English share one code path.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
import opencc

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)
_SPACE = re.compile(r"\s+")
_MULTIPLIER = np.uint64(1_000_003)
_MIX_1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX_2 = np.uint64(0xC4CEB9FE1A85EC53)
_SHIFT = np.uint64(33)


@lru_cache(maxsize=1)
def t2s() -> opencc.OpenCC:
    """The one Traditional-to-Simplified converter of the process."""
    return opencc.OpenCC("t2s")


def fold(text: str) -> str:
    """Comparison form: half-width, Simplified script, lower case, words and spaces."""
    text = unicodedata.normalize("NFKC", text)
    if _CJK.search(text):
        text = t2s().convert(text)
    return _SPACE.sub(" ", _NOT_WORD.sub(" ", text.casefold())).strip()


def is_cjk(folded: str) -> bool:
    """True when CJK characters carry the text (each counts as a word's worth)."""
    cjk = len(_CJK.findall(folded))
    return cjk > 0 and cjk * 3 >= len(_LATIN.findall(folded))


def compact(folded: str) -> str:
    """Drop spaces between CJK characters; keep them between Latin words."""
    return folded.replace(" ", "") if is_cjk(folded) else folded


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """32-bit hashes of every character n-gram of `text` (one n-gram if shorter)."""
    if not text:
        return np.zeros(0, dtype=np.uint32)
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = min(n, len(points))
    count = len(points) - n + 1
    acc = np.zeros(count, dtype=np.uint64)
    for j in range(n):
        acc = acc * _MULTIPLIER + points[j : j + count]
    # MurmurHash3's 64-bit finalizer spreads the polynomial hash over all bits.
    acc ^= acc >> _SHIFT
    acc *= _MIX_1
    acc ^= acc >> _SHIFT
    acc *= _MIX_2
    acc ^= acc >> _SHIFT
    return (acc & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def shingle_size(folded: str) -> int:
    """Three characters for Chinese (about one word), five for Latin scripts."""
    return 3 if is_cjk(folded) else 5


def shingles(text: str, limit: int = 2000) -> np.ndarray:
    """Distinct n-gram hashes of the folded text: the near-duplicate sieve's set."""
    folded = compact(fold(text)[:limit])
    return np.unique(ngram_hashes(folded, shingle_size(folded)))


_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])\s*|\n+")
MIN_SEGMENT = 8


def segments(text: str) -> list[tuple[str, str]]:
    """The sentences of a text with a short hash of each one's folded form."""
    out = []
    for sentence in _SENTENCE_END.split(text):
        # One source writes its boilerplate one way: no script folding needed.
        key = _NOT_WORD.sub("", sentence.casefold())
        if len(key) * (2 if is_cjk(key) else 1) >= MIN_SEGMENT:
            digest = hashlib.blake2b(key.encode("utf-8"), digest_size=6).hexdigest()
            out.append((digest, sentence.strip()))
    return out


# Fact tokens -----------------------------------------------------------------

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE_BEFORE = re.compile(_MONTH + r"\s*$", re.IGNORECASE)
_DATE_AFTER = re.compile(
    r"(?:[月日时時点點分秒年号號]|\s*(?:st|nd|rd|th)?\s*(?:of\s+)?" + _MONTH + r"(?!\w)"
    r"|\s*[ap]\.?m\b|:\d)",
    re.IGNORECASE,
)
_EN_NAME = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:of\s+|the\s+)?[A-Z][\w'’-]*)*")
_ZH_QUOTED = re.compile(r"[“「『《\"]([^”」』》\"]{2,20})[”」』》\"]")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+|\n)([A-Z][\w'’-]*)")
_NOT_FACTS = {
    # Calendar words, honorifics and wire names: present in every copy of a story.
    *"monday tuesday wednesday thursday friday saturday sunday".split(),
    *"january february march april may june july august september".split(),
    *"october november december jan feb mar apr jun jul aug sep sept".split(),
    *"oct nov dec mr mrs ms dr the a an in on at of for and but he she it".split(),
    *"they we i this that these those there reuters xinhua ap afp".split(),
    *"bloomberg update breaking exclusive analysis photo video live".split(),
    # Names in nearly every China story: their presence is no news.
    *"china chinese beijing cctv cgtn state media government officials".split(),
    *"people's daily global times president premier ministry".split(),
}
_POSSESSIVE = re.compile(r"['’]s\b")


def _number_token(raw: str) -> str | None:
    value = raw.replace(",", "")
    if value.count(".") > 1:
        value = value.replace(".", "")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    digits = value.replace(".", "")
    # Four-digit years repeat in every report of an event; they are not news.
    if len(digits) == 4 and "." not in value and 1900 <= int(digits) <= 2100:
        return None
    return "n:" + value


def fact_weight(facts: Iterable[str]) -> float:
    """How much news a set of fact tokens carries: a number 1, a name 0.5."""
    return sum(1.0 if f.startswith("n:") else 0.5 for f in facts)


def fact_tokens(text: str, lang: str) -> set[str]:
    """Numbers and names a member states: `n:` numbers, `<lang>:` names.

    Numbers compare across languages; names only within one, since
    "Xi Jinping" and "习近平" cannot be matched without a dictionary.
    """
    text = unicodedata.normalize("NFKC", text)
    facts = set()
    for match in _NUMBER.finditer(text):
        start, end = match.span()
        # Dates and clock times are in every report of every day's news.
        if _DATE_BEFORE.search(text, max(0, start - 12), start):
            continue
        if _DATE_AFTER.match(text, end) or text[max(0, start - 1) : start] == ":":
            continue
        if token := _number_token(match.group(0)):
            facts.add(token)
    if lang == "zh" or is_cjk(fold(text)):
        folded = [fold(q).replace(" ", "") for q in _ZH_QUOTED.findall(text)]
        facts.update("zh:" + q for q in folded if q)
        return facts
    text = _POSSESSIVE.sub("", text)
    openers = {m.group(1).casefold() for m in _SENTENCE_START.finditer(text)}
    for match in _EN_NAME.finditer(text):
        words = _NOT_WORD.sub(" ", match.group(0).casefold()).split()
        while words and words[0] in _NOT_FACTS:
            words.pop(0)
        if not words or all(w in _NOT_FACTS for w in words):
            continue
        name = " ".join(words)
        if len(words) == 1 and (name in openers or len(name) < 3):
            continue
        facts.add(f"{lang}:{name}")
    return facts
