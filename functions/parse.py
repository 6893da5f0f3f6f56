"""Turn raw feed bytes into feedparser entries, decoding charsets correctly.

Chinese feeds often declare GB2312 while carrying GBK or GB18030 bytes,
and Big5 feeds carry Hong Kong characters outside plain Big5, so each
declared charset is widened to its superset before decoding. The
document is handed to feedparser as UTF-8 with an internal DTD removed,
so an entity-expansion bomb has nothing to expand.
"""

from __future__ import annotations

import codecs
import html.entities
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import feedparser

_LOGGER = logging.getLogger(__name__)

# Declared charset -> the superset that decodes what publishers really send.
_WIDER = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "big5": "big5hkscs",
    "big5-hkscs": "big5hkscs",
    "cp950": "big5hkscs",
    "iso-8859-1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "utf-8",
    "ascii": "utf-8",
}
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_XML_DECL_TEXT = re.compile(r"^\s*<\?xml[^>]*\?>")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._-]+)", re.I)
_DOCTYPE = re.compile(r"<!DOCTYPE[^>\[]*(\[.*?\]\s*)?>", re.S | re.I)
_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_XML_ENTITIES = {"amp", "lt", "gt", "quot", "apos"}
_HTML_START = re.compile(r"^\s*(<!--.*?-->\s*)*(<!doctype\s+html|<html)", re.I | re.S)


class FeedError(ValueError):
    """A feed yielded no entries; the message says why."""


@dataclass
class ParsedFeed:
    entries: list[Any]
    feed: Any
    encoding: str
    warnings: list[str] = field(default_factory=list)


def _normalize_charset(name: str | None) -> str | None:
    if not name:
        return None
    name = name.strip().lower()
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        return None
    return _WIDER.get(name, _WIDER.get(canonical, canonical))


def decode_feed(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Decode feed bytes to text; returns (text, encoding used).

    Order: byte-order mark; valid UTF-8 when the bytes are not plain ASCII
    (a strong signal that beats a wrong declaration); the HTTP charset;
    the XML declaration; then GB18030 and Big5-HKSCS, the usual Chinese
    encodings; finally cp1252 with replacement so nothing is lost.
    """
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return body.decode(encoding, errors="replace"), encoding

    candidates: list[str] = []
    if not body.isascii():
        candidates.append("utf-8")
    http_match = _CHARSET.search(content_type or "")
    declared_http = _normalize_charset(http_match.group(1) if http_match else None)
    xml_match = _XML_DECL.search(body[:200])
    declared_xml = _normalize_charset(
        xml_match.group(1).decode("ascii") if xml_match else None
    )
    candidates += [c for c in (declared_http, declared_xml) if c]
    candidates += ["utf-8", "gb18030", "big5hkscs"]

    for encoding in dict.fromkeys(candidates):
        try:
            return body.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError):
            continue
    return body.decode("cp1252", errors="replace"), "cp1252+replace"


def _defuse(text: str, warnings: list[str]) -> str:
    """Drop an internal DTD and turn HTML named entities into numeric ones."""
    if _DOCTYPE.search(text[:4096]) and "<!ENTITY" in text[:65536].upper():
        text = _DOCTYPE.sub("", text, count=1)
        warnings.append("removed a DOCTYPE with entity declarations")

    def numeric(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _XML_ENTITIES:
            return match.group(0)
        codepoint = html.entities.name2codepoint.get(name)
        return f"&#{codepoint};" if codepoint else f"&amp;{name};"

    return _ENTITY.sub(numeric, text)


def parse_feed(
    body: bytes, *, url: str = "", content_type: str | None = None
) -> ParsedFeed:
    """Parse one feed document; raises FeedError when it yields no entries."""
    text, encoding = decode_feed(body, content_type)
    warnings: list[str] = []
    if encoding not in ("utf-8", "utf-8-sig"):
        warnings.append(f"decoded as {encoding}")

    text = _defuse(text, warnings)
    text = _XML_DECL_TEXT.sub('<?xml version="1.0" encoding="utf-8"?>', text, count=1)
    parsed = feedparser.parse(
        text.encode("utf-8"),
        response_headers={
            "content-type": "application/xml; charset=utf-8",
            "content-location": url,
        },
        resolve_relative_uris=True,
        sanitize_html=True,
    )

    if parsed.bozo and parsed.entries:
        warnings.append(
            f"malformed, read leniently: {_describe(parsed.bozo_exception)}"
        )
    if not parsed.entries:
        raise FeedError(_why_empty(text, parsed))
    return ParsedFeed(parsed.entries, parsed.feed, encoding, warnings)


def _describe(exc: Any) -> str:
    return str(getattr(exc, "getMessage", lambda: exc)()) if exc else "unknown"


def _why_empty(text: str, parsed: Any) -> str:
    if _HTML_START.search(text[:2048]) and "<rss" not in text[:4096].lower():
        return "an HTML page, not a feed"
    if not text.strip():
        return "empty body"
    if parsed.bozo:
        return f"not a readable feed: {_describe(parsed.bozo_exception)}"
    if parsed.version:
        return f"a valid {parsed.version} feed with no items"
    return "no feed items found"
