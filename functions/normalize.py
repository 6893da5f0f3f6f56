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
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit
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
MIN_TITLE_KEY_CHARS = 16
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)
_GOOGLE_URL = re.compile(rb"https?://[\x21-\x7e]+")


def canonical_url(url: str, base: str = "") -> str:
    """Lower-case host, no fragment, no tracking parameters, relative links resolved."""
    url = urljoin(base, url.strip()) if base else url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        return url
    port = parts.port
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in TRACKING_PARAMS
        and not k.lower().startswith(TRACKING_PREFIXES)
    ]
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, urlencode(sorted(query)), ""))


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
    _BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "tr", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._stack: list[bool] = []

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
            or "font-size:0" in style
        )

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.parts.append(" ")
        if tag in self._VOID:
            return
        self._stack.append(
            bool(self._stack and self._stack[-1]) or self._hidden(tag, attrs)
        )

    def handle_endtag(self, tag: str) -> None:
        if tag in self._VOID:
            return
        if self._stack:
            self._stack.pop()
        if tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not (self._stack and self._stack[-1]):
            self.parts.append(data)


def strip_html(fragment: str) -> str:
    """Visible text of an HTML fragment with entities decoded and spaces collapsed."""
    if "<" not in fragment and "&" not in fragment:
        return _SPACE.sub(" ", fragment).strip()
    parser = _TextExtractor()
    parser.feed(fragment)
    parser.close()
    return _SPACE.sub(" ", "".join(parser.parts)).strip()


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
    """Parse a feed date; returns (aware datetime, whether the zone was explicit)."""
    if not raw:
        return None, False
    raw = raw.strip()
    value: datetime | None = None
    try:
        value = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        value = None
    if value is None:
        cleaned = raw.replace("Z", "+00:00").replace("/", "-")
        cleaned = re.sub(r"^(\d{4}-\d{2}-\d{2})\s+", r"\1T", cleaned)
        try:
            value = datetime.fromisoformat(cleaned)
        except ValueError:
            return None, False
    if value.tzinfo is None:
        return value.replace(tzinfo=_zone(source_tz)), False
    # RFC 822 "-0000" means "zone unknown": email.utils returns it as naive UTC.
    return value, True


@dataclass
class TimeResult:
    published: datetime
    estimated: bool
    note: str = ""


def resolve_time(raw: str | None, source: Source, now: datetime) -> TimeResult:
    """Publication time in UTC; missing, naive, mislabelled and future times handled.

    A naive time is read in the source's zone. A time labelled GMT that lands
    in the future but is plausible as the source's local time (Beijing time
    wrongly labelled GMT is common) is read as local. Anything else in the
    future, missing or unparsable takes the first-seen time, marked estimated.
    """
    value, explicit = parse_time(raw, source.timezone)
    if value is None:
        return TimeResult(now, True, "no date" if not raw else "unparsable date")

    zone = _zone(source.timezone)
    is_utc_label = explicit and value.utcoffset() == timedelta(0)
    if is_utc_label and source.gmt_means_local:
        value = value.replace(tzinfo=zone)
    value = value.astimezone(UTC)

    if value > now + FUTURE_TOLERANCE and is_utc_label:
        local = value.replace(tzinfo=None).replace(tzinfo=zone).astimezone(UTC)
        if local <= now + FUTURE_TOLERANCE:
            return TimeResult(local, False, f"GMT label read as {source.timezone}")
    if value > now + FUTURE_TOLERANCE:
        return TimeResult(now, True, "date in the future")
    return TimeResult(value, False)


def _entry_time_raw(entry: Any) -> str | None:
    for key in ("published", "updated", "created", "dc_date", "pubdate"):
        value = entry.get(key)
        if value:
            return str(value)
    return None


def _entry_text(entry: Any) -> str:
    content = entry.get("content") or []
    candidates = [c.get("value", "") for c in content if isinstance(c, dict)]
    candidates.append(entry.get("summary", "") or entry.get("description", ""))
    best = max(candidates, key=len, default="")
    return strip_html(best)


def normalize_entry(
    entry: Any,
    source: Source,
    *,
    feed_url: str,
    feed_lang: str | None,
    now: datetime,
) -> Item | None:
    """One feed entry as an Item, or None when it has neither title nor text."""
    title = strip_html(entry.get("title", "") or "")
    text = _entry_text(entry)
    if not title and not text:
        return None
    if not title:
        title = text[:120]

    raw_link = entry.get("link", "") or ""
    link = canonical_url(raw_link, feed_url) if raw_link else ""
    target = google_news_target(link) if link else None
    if target:
        link = canonical_url(target)
    guid = str(entry.get("id", "") or "").strip()

    lang = source.lang
    if lang not in ("en", "zh"):
        declared = (feed_lang or "").lower()
        lang = "zh" if declared.startswith("zh") else detect_lang(title + " " + text)

    when = resolve_time(_entry_time_raw(entry), source, now)
    if when.note and when.note != "no date":
        _LOGGER.debug("%s: %s for %r", source.name, when.note, title[:60])

    norm_title = normalize_title(title)
    title_hash = _hash(norm_title)
    content_hash = _hash(norm_title + "\n" + normalize_title(text))

    keys: list[str] = []
    is_google = bool(link) and urlsplit(link).hostname == "news.google.com"
    if link and not is_google:
        keys.append("url:" + link.split("://", 1)[-1])
    if guid and guid != raw_link:
        keys.append(f"guid:{source.name}:{guid.split('://', 1)[-1]}")
    if len(norm_title) >= MIN_TITLE_KEY_CHARS or not keys:
        keys.append(f"title:{source.name}:{title_hash}")
    if len(text) >= 200:
        keys.append(f"content:{source.name}:{_hash(normalize_title(text))}")

    item_id = "i" + hashlib.sha1(keys[0].encode("utf-8")).hexdigest()[:19]
    return Item(
        id=item_id,
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
