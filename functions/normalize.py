"""Normalize feed entries into `Item`s with a stable identity.

An item is known by several keys: its canonical URL (scheme dropped, so
http and https meet), its GUID within the source, its normalized title
within the source and its content within the source. The store treats
an entry matching any known key as the same item, so a regenerated GUID,
a retitled headline or a second URL updates it in place.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urljoin, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from functions.models import Item, Source

_LOGGER = logging.getLogger(__name__)

TRACKING_PARAMS = {
    "fbclid",
    "gclid",
    "dclid",
    "msclkid",
    "yclid",
    "igshid",
    "mc_cid",
    "mc_eid",
    "spm",
    "scm",
    "from",
    "share_token",
    "ref",
    "ref_src",
    "cmpid",
    "ocid",
    "__twitter_impression",
    "s_cid",
}
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")
FUTURE_TOLERANCE = timedelta(minutes=15)
EARLIEST_PLAUSIBLE = datetime(1995, 1, 1, tzinfo=UTC)
MIN_TITLE_KEY_CHARS = 16
# A headline past this is a broken feed, not a headline; it is cut at a word.
MAX_TITLE_CHARS = 300
# Article text kept per item; summaries and checks read only the opening.
MAX_TEXT_CHARS = 20_000
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)
_GOOGLE_URL = re.compile(rb"https?://[\x21-\x7e]+")
_ZERO_FONT = re.compile(r"font-size:0(\.0*)?([a-z%]*)(;|!|$)")
_TAG = re.compile(r"<[^>]*>")
_CJK_DATE = re.compile(
    r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日"
    r"(?:\s*(\d{1,2})\s*[:：时時]\s*(\d{1,2})(?:\s*[:：分]\s*(\d{1,2}))?)?"
)


def canonical_url(url: str, base: str = "") -> str:
    """Lower-case host, no fragment, no tracking parameters, relative links resolved.

    The query keeps its own spelling and order (only tracking parameters
    go), so the link still opens the page the publisher meant.
    """
    url = url.strip()
    try:
        url = urljoin(base, url) if base else url
        parts = urlsplit(url)
    except ValueError:  # such as an unclosed IPv6 bracket: keep it as written
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        return url
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    query = "&".join(
        pair for pair in parts.query.split("&") if pair and not _is_tracking(pair)
    )
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, query, ""))


def _is_tracking(pair: str) -> bool:
    key = unquote_plus(pair.split("=", 1)[0]).strip().lower()
    return key in TRACKING_PARAMS or key.startswith(TRACKING_PREFIXES)


def google_news_target(url: str) -> str | None:
    """The publisher URL inside a Google News redirect link, when it can be read."""
    parts = urlsplit(url)
    if parts.hostname != "news.google.com":
        return None
    for key, value in parse_qsl(parts.query):
        if key == "url" and value.startswith("http"):
            return value
    token = parts.path.rstrip("/").rsplit("/", 1)[-1]
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return None
    match = _GOOGLE_URL.search(raw)
    return match.group(0).decode("ascii") if match else None


class _TextExtractor(HTMLParser):
    """Visible text of an HTML fragment: no scripts, styles or hidden elements."""

    _SKIP = {"script", "style", "noscript", "template", "head", "title", "iframe"}
    _VOID = {"br", "img", "hr", "meta", "link", "input", "source", "wbr", "area"}
    _BLOCK = {
        "p",
        "div",
        "br",
        "hr",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "td",
        "th",
        "table",
        "blockquote",
        "section",
        "article",
        "header",
        "footer",
        "figure",
        "figcaption",
        "pre",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        # Open elements and whether each is hidden (itself or by an ancestor).
        self._stack: list[tuple[str, bool]] = []

    def _inside_hidden(self) -> bool:
        return bool(self._stack) and self._stack[-1][1]

    def _hidden(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if tag in self._SKIP:
            return True
        values = {k.lower(): (v or "") for k, v in attrs}
        style = values.get("style", "").replace(" ", "").lower()
        return (
            "hidden" in values
            or values.get("aria-hidden") == "true"
            or "display:none" in style
            or "visibility:hidden" in style
            or bool(_ZERO_FONT.search(style))
        )

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.parts.append(" ")
        if tag in self._VOID:
            return
        self._stack.append((tag, self._inside_hidden() or self._hidden(tag, attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BLOCK:
            self.parts.append(" ")
        # Close up to the matching element: unclosed <p> or <li> inside it
        # must not leave it open (and possibly hiding everything after).
        for depth in range(len(self._stack) - 1, -1, -1):
            if self._stack[depth][0] == tag:
                del self._stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        if not self._inside_hidden():
            self.parts.append(data)


def strip_html(fragment: str) -> str:
    """Visible text of an HTML fragment with entities decoded and spaces collapsed."""
    if "<" not in fragment and "&" not in fragment:
        return _SPACE.sub(" ", fragment).strip()
    parser = _TextExtractor()
    try:
        parser.feed(fragment)
        parser.close()
        text = "".join(parser.parts)
    except AssertionError:
        # html.parser gives up on some malformed markup (`<![foo`); keep the text.
        text = html.unescape(_TAG.sub(" ", fragment))
    return _SPACE.sub(" ", text).strip()


def detect_lang(text: str) -> str:
    """zh when CJK characters make up a fair share of the letters, else en."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    if cjk == 0:
        return "en"
    return "zh" if cjk * 4 >= latin else "en"


def normalize_title(title: str) -> str:
    """Comparison form: NFKC (full to half width), lower case, no punctuation."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", title).lower())


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_time(raw: str | None, source_tz: str) -> tuple[datetime | None, bool]:
    """Parse a feed date; returns (aware datetime, whether the zone was explicit).

    RFC 822, ISO 8601 and the Chinese `2025年11月14日 08:00` form are read;
    a time without a zone (or RFC 822's "-0000", zone unknown) is read in
    the source's zone.
    """
    if not raw:
        return None, False
    raw = raw.strip()
    value = _parse_rfc822(raw) or _parse_iso(raw) or _parse_cjk(raw)
    if value is None:
        return None, False
    if value.tzinfo is None:
        return value.replace(tzinfo=_zone(source_tz)), False
    return value, True


def _parse_rfc822(raw: str) -> datetime | None:
    try:
        return parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _parse_iso(raw: str) -> datetime | None:
    cleaned = re.sub(r"[Zz]$", "+00:00", raw).replace("/", "-")
    cleaned = re.sub(r"^(\d{4}-\d{1,2}-\d{1,2})\s+", r"\1T", cleaned)
    cleaned = re.sub(r"^(\d{4})-(\d)\b", r"\1-0\2", cleaned)
    cleaned = re.sub(r"^(\d{4}-\d{2})-(\d)\b", r"\1-0\2", cleaned)
    try:
        return datetime.fromisoformat(cleaned)
    except ValueError:
        return None


def _parse_cjk(raw: str) -> datetime | None:
    match = _CJK_DATE.search(raw)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g or 0) for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


@dataclass
class TimeResult:
    published: datetime
    estimated: bool
    note: str = ""


def resolve_time(
    raw: str | None,
    source: Source,
    now: datetime,
    *,
    parsed: time.struct_time | None = None,
) -> TimeResult:
    """Publication time in UTC; missing, naive, mislabelled and future times handled.

    A naive time is read in the source's zone. A time labelled GMT that lands
    in the future but is plausible as the source's local time (Beijing time
    wrongly labelled GMT is common) is read as local. Anything else in the
    future, before `EARLIEST_PLAUSIBLE` (placeholder dates such as the Unix
    epoch), missing or unparsable takes the first-seen time, marked estimated.
    `parsed` is feedparser's UTC reading, used when the raw text defeats us.
    """
    value, explicit = parse_time(raw, source.timezone)
    if value is None and parsed is not None:
        try:
            value, explicit = datetime(*parsed[:6], tzinfo=UTC), True
        except (TypeError, ValueError):
            value = None
    if value is None:
        return TimeResult(now, True, "no date" if not raw else "unparsable date")

    zone = _zone(source.timezone)
    is_utc_label = explicit and value.utcoffset() == timedelta(0)
    try:
        if is_utc_label and source.gmt_means_local:
            value = value.replace(tzinfo=zone)
        value = value.astimezone(UTC)
    except (OverflowError, ValueError):
        return TimeResult(now, True, "unparsable date")

    if value < EARLIEST_PLAUSIBLE:
        return TimeResult(now, True, "implausibly old date")
    if value > now + FUTURE_TOLERANCE and is_utc_label:
        local = value.replace(tzinfo=zone).astimezone(UTC)
        if local <= now + FUTURE_TOLERANCE:
            return TimeResult(local, False, f"GMT label read as {source.timezone}")
    if value > now + FUTURE_TOLERANCE:
        return TimeResult(now, True, "date in the future")
    return TimeResult(value, False)


def _entry_time(entry: Any) -> tuple[str | None, time.struct_time | None]:
    for key in ("published", "updated", "created", "dc_date", "pubdate"):
        value = entry.get(key)
        if value:
            return str(value), entry.get(key + "_parsed")
    return None, None


def _entry_title(entry: Any) -> str:
    raw = entry.get("title", "") or ""
    detail = entry.get("title_detail") or {}
    if detail.get("type") == "text/plain":
        # Plain text: a "<" is a character, and escapes left in it are
        # double-escaped HTML (common in Chinese CMS output).
        return _SPACE.sub(" ", html.unescape(raw)).strip()
    return strip_html(raw)


def _entry_text(entry: Any) -> str:
    content = entry.get("content") or []
    candidates = [c.get("value", "") for c in content if isinstance(c, dict)]
    candidates.append(entry.get("summary", "") or entry.get("description", ""))
    best = max(candidates, key=len, default="")
    return strip_html(best)


def _without_publisher(title: str, entry: Any) -> str:
    """A Google News title without its trailing " - Publisher"."""
    publisher = str((entry.get("source") or {}).get("title") or "").strip()
    if publisher and title.endswith(" - " + publisher):
        return title[: -len(publisher) - 3].rstrip()
    return title


def item_id(keys: list[str]) -> str:
    """The stable id of an item: a hash of its strongest identity key."""
    return "i" + hashlib.sha1(keys[0].encode("utf-8")).hexdigest()[:19]


def cap_title(title: str, limit: int = MAX_TITLE_CHARS) -> str:
    """A headline no longer than `limit`, cut at a space when there is one."""
    if len(title) <= limit:
        return title
    head = title[: limit - 1]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head).rstrip() + "…"


def normalize_entry(
    entry: Any,
    source: Source,
    *,
    feed_url: str,
    feed_lang: str | None,
    now: datetime,
) -> Item | None:
    """One feed entry as an Item, or None when it has neither title nor text."""
    title = _entry_title(entry)
    text = _entry_text(entry)
    if not title and not text:
        return None
    if not title:
        title = text[:120]
    title = cap_title(title)
    text = text[:MAX_TEXT_CHARS]

    raw_link = str(entry.get("link", "") or "").strip()
    link = canonical_url(raw_link, feed_url) if raw_link else ""
    is_google = urlsplit(link).hostname == "news.google.com" if link else False
    if is_google:
        title = _without_publisher(title, entry)
        target = google_news_target(link)
        if target:
            link = canonical_url(target)
    has_host = urlsplit(link).scheme in ("http", "https") and bool(
        urlsplit(link).hostname
    )
    guid = str(entry.get("id", "") or "").strip()

    lang = source.lang
    if lang not in ("en", "zh"):
        declared = (feed_lang or "").lower()
        if declared.startswith("zh"):
            lang = "zh"
        elif declared.startswith("en"):
            lang = "en"
        else:
            lang = detect_lang(title + " " + text)

    raw_time, parsed_time = _entry_time(entry)
    when = resolve_time(raw_time, source, now, parsed=parsed_time)
    if when.note and when.note != "no date":
        _LOGGER.debug("%s: %s for %r", source.name, when.note, title[:60])

    norm_title = normalize_title(title)
    title_hash = _hash(norm_title)
    content_hash = _hash(norm_title + "\n" + normalize_title(text))

    keys: list[str] = []
    on_google = has_host and urlsplit(link).hostname == "news.google.com"
    if has_host and not on_google:
        keys.append("url:" + link.split("://", 1)[-1])
    if guid and guid != raw_link:
        keys.append(f"guid:{source.name}:{guid.split('://', 1)[-1]}")
    if len(norm_title) >= MIN_TITLE_KEY_CHARS or on_google or not keys:
        # Google News links that cannot be decoded are known by title and source.
        keys.append(f"title:{source.name}:{title_hash}")
    if len(text) >= 200:
        keys.append(f"content:{source.name}:{_hash(normalize_title(text))}")

    return Item(
        id=item_id(keys),
        source=source.name,
        url=link or feed_url,
        guid=guid,
        title=title,
        text=text,
        lang=lang,
        published=when.published,
        published_estimated=when.estimated,
        first_seen=now,
        content_hash=content_hash,
        title_hash=title_hash,
        keys=keys,
    )


def drop_ambiguous_keys(items: list[Item]) -> list[str]:
    """Within one feed, drop keys that different items share; returns warnings.

    Two entries are the same article when they share a canonical URL, or a
    title without conflicting GUIDs. A GUID, title or content key carried
    by entries of different articles (a CMS reusing GUIDs, one boilerplate
    description on every item) identifies nothing and would merge them.
    """
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_url: dict[str, int] = {}
    by_title: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        for key in item.keys:
            if key.startswith("url:"):
                if key in by_url:
                    parent[find(i)] = find(by_url[key])
                else:
                    by_url[key] = i
        for j in by_title.get(item.title_hash, []):
            other = items[j]
            if not (item.guid and other.guid and item.guid != other.guid):
                parent[find(i)] = find(j)
        by_title.setdefault(item.title_hash, []).append(i)

    owners: dict[str, set[int]] = {}
    for i, item in enumerate(items):
        for key in item.keys:
            if not key.startswith("url:"):
                owners.setdefault(key, set()).add(find(i))
    ambiguous = {key for key, groups in owners.items() if len(groups) > 1}
    if not ambiguous:
        return []

    for item in items:
        if any(key in ambiguous for key in item.keys):
            item.keys = [k for k in item.keys if k not in ambiguous] or [
                f"content-title:{item.source}:{item.title_hash}:{item.content_hash}"
            ]
            item.id = item_id(item.keys)
    kinds = sorted({key.split(":", 1)[0] for key in ambiguous})
    return [
        f"{len(ambiguous)} {'/'.join(kinds)} key(s) shared by different items "
        "in one feed: not used as identity"
    ]
