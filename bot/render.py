"""One renderer for every channel: console text, Telegram HTML and an HTML page.

All three render the same `Digest` (the selected story set), so what the
console shows locally is what a reader gets in Telegram. Every string that
came from a feed or a model is escaped for its target, and stripped of
control characters so a hostile title cannot drive a terminal either.

Telegram counts a message's length in UTF-16 code units. We count the HTML
source, not the text Telegram keeps after parsing it, so a part that fits
here always fits there.
"""

from __future__ import annotations

import html
import logging
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from functions.models import Digest, DigestEntry, SourceLink, Summary

_LOGGER = logging.getLogger(__name__)

TELEGRAM_LIMIT = 4096
PRODUCT_NAME = "China to Watch"

# Longest "(nnn/nnn)" marker put in front of a continued message, and its gap.
_PART_MARKER_RESERVE = 24
_MAX_URL_LENGTH = 2048

_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "generated": "Generated {time}",
        "empty": "Nothing worth sending today.",
        "sources": "Sources",
        "llm": "Written summary",
        "extractive": "Extractive summary: sentences taken from the articles",
        "extractive-fallback": (
            "Extractive summary: the written one did not pass the fact-check"
        ),
        "verified": "✓ Fact-checked against the articles",
        "partly-verified": "◐ Partly verified: unsupported sentences removed",
        "facts-checked": "✓ Numbers, dates, names and quotes found in the articles",
        "failed": "✗ Did not pass the fact-check",
        "unchecked": "Not fact-checked",
        "state media": "state media",
        "party media": "party media",
        "public broadcaster": "public broadcaster",
        "independent": "independent",
        "commercial": "commercial",
        "wire service": "wire service",
        "government": "government",
        "reader": "Reader",
        "edition": "edition",
        "update": "Update",
        "text_lang": "in {lang}: no source in English",
        "lang_en": "English",
        "lang_zh": "Chinese",
    },
    "zh": {
        "generated": "生成于 {time}",
        "empty": "今天没有值得推送的新闻。",
        "sources": "来源",
        "llm": "模型撰写的摘要",
        "extractive": "摘录式摘要：句子取自原文",
        "extractive-fallback": "摘录式摘要：模型摘要未通过核查",
        "verified": "✓ 已对照原文核查",
        "partly-verified": "◐ 部分核实：已删去无依据的句子",
        "facts-checked": "✓ 数字、日期、人名与引语均见于原文",
        "failed": "✗ 未通过核查",
        "unchecked": "未核查",
        "state media": "官方媒体",
        "party media": "党媒",
        "public broadcaster": "公共广播",
        "independent": "独立媒体",
        "commercial": "商业媒体",
        "wire service": "通讯社",
        "government": "政府",
        "reader": "读者",
        "edition": "期号",
        "update": "更新",
        "text_lang": "{lang}原文：没有中文来源",
        "lang_en": "英文",
        "lang_zh": "中文",
    },
}

# C0 and C1 controls (bar tab and newline), bidi overrides and isolates.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")

# A tag, an entity, or one character; splitting happens only between tokens.
_TOKEN = re.compile(r"<[^>]*>|&#?[A-Za-z0-9]+;|.", re.DOTALL)
_TAG_NAME = re.compile(r"</?([A-Za-z-]+)")


@dataclass(frozen=True)
class TelegramPart:
    """One Telegram message of a digest and the stories it carries."""

    html: str
    story_ids: tuple[str, ...]


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: characters outside the BMP count twice."""
    return len(text.encode("utf-16-le")) // 2


def clean(text: str | None) -> str:
    """Feed or model text on one line, with control characters removed."""
    return _SPACES.sub(" ", _CONTROL.sub("", text or "")).strip()


def escape(text: str | None) -> str:
    """Clean text escaped for Telegram HTML and HTML pages alike."""
    return html.escape(clean(text), quote=False)


def escape_attr(text: str) -> str:
    return html.escape(clean(text), quote=True)


def safe_url(url: str | None) -> str | None:
    """The URL if it is a plain http(s) link we can show, else None."""
    value = clean(url)
    if not value or len(value) > _MAX_URL_LENGTH:
        return None
    if not re.match(r"(?i)^https?://[^\s/?#]+", value):
        return None
    return value


def _labels(lang: str) -> dict[str, str]:
    return _LABELS.get(lang.split("-")[0].lower(), _LABELS["en"])


def _generated(digest: Digest) -> str:
    moment = digest.generated_at
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return _labels(digest.lang)["generated"].format(time=stamp)


def _title(digest: Digest) -> str:
    return f"{PRODUCT_NAME} · {digest.generated_at.strftime('%Y-%m-%d')}"


def ownership_label(ownership: str, lang: str) -> str:
    """The ownership label shown next to an outlet; empty when unknown."""
    key = clean(ownership).lower()
    if not key or key == "unknown":
        return ""
    return _labels(lang).get(key, key)


def method_note(summary: Summary, lang: str) -> str:
    """How the summary was made and what the fact-check said, in one line."""
    labels = _labels(lang)
    method = labels.get(summary.method, clean(summary.method))
    verdict = labels.get(summary.verdict, clean(summary.verdict))
    note = f"{method} · {verdict}"
    written_in = clean(summary.text_lang)
    if written_in and written_in != lang:
        name = labels.get(f"lang_{written_in}", written_in)
        note += " · " + labels["text_lang"].format(lang=name)
    return note


def summary_text(summary: Summary) -> str:
    """The summary's sentences, a claim only one outlet carries attributed to it."""
    return clean(" ".join(summary.attributed_sentences()))


def extra_facts(summary: Summary) -> list[str]:
    """Key facts that do not merely repeat a sentence of the summary."""
    said = {clean(sentence) for sentence in summary.sentences}
    facts = [clean(fact.text) for fact in summary.key_facts]
    return [fact for fact in facts if fact and fact not in said]


def headline(entry: DigestEntry, lang: str) -> str:
    """The story's headline, marked when it is back with new facts."""
    text = clean(entry.summary.headline) or clean(entry.story.title)
    return f"{_labels(lang)['update']}: {text}" if entry.is_update else text


def _link_text(link: SourceLink, lang: str) -> tuple[str, str]:
    """Escaped outlet name and its escaped ownership suffix (may be empty)."""
    label = ownership_label(link.ownership, lang)
    suffix = f" ({html.escape(label, quote=False)})" if label else ""
    return escape(link.name) or escape(link.url), suffix


# Telegram ----------------------------------------------------------------


def _telegram_header(digest: Digest) -> str:
    lines = [f"<b>{escape(_title(digest))}</b>", f"<i>{escape(_generated(digest))}</i>"]
    if clean(digest.opening):
        lines.append("")
        lines.append(escape(digest.opening))
    return "\n".join(lines)


def _telegram_links(links: list[SourceLink], lang: str) -> str:
    shown = []
    for link in links:
        name, suffix = _link_text(link, lang)
        url = safe_url(link.url)
        if url:
            shown.append(f'<a href="{escape_attr(url)}">{name}</a>{suffix}')
        else:
            shown.append(f"{name}{suffix}")
    return ", ".join(shown)


def _telegram_story(number: int, entry: DigestEntry, lang: str) -> str:
    summary = entry.summary
    lines = [f"<b>{number}. {escape(headline(entry, lang))}</b>"]
    if summary_text(summary):
        lines.append(escape(summary_text(summary)))
    lines.extend(f"• {escape(fact)}" for fact in extra_facts(summary))
    lines.append(f"<i>{escape(method_note(summary, lang))}</i>")
    if entry.links:
        label = _labels(lang)["sources"]
        lines.append(f"{label}: {_telegram_links(entry.links, lang)}")
    return "\n".join(lines)


def telegram_parts(
    digest: Digest, *, limit: int = TELEGRAM_LIMIT
) -> list[TelegramPart]:
    """The digest as Telegram HTML messages, split between stories when it can."""
    if limit < 2 * _PART_MARKER_RESERVE:
        raise ValueError(f"limit {limit} is too small for a Telegram message")
    header = _telegram_header(digest)
    if not digest.entries:
        # An empty digest's opening (if any) is the note that says so.
        note = header
        if not clean(digest.opening):
            note += f"\n\n{escape(_labels(digest.lang)['empty'])}"
        return [TelegramPart(html=piece, story_ids=()) for piece in _fit(note, limit)]

    budget = limit - _PART_MARKER_RESERVE
    blocks: list[tuple[str, tuple[str, ...]]] = [(header, ())]
    for number, entry in enumerate(digest.entries, start=1):
        blocks.append((_telegram_story(number, entry, digest.lang), (entry.story.id,)))

    parts: list[tuple[str, tuple[str, ...]]] = []
    text = ""
    ids: tuple[str, ...] = ()
    for block, block_ids in blocks:
        joined = f"{text}\n\n{block}" if text else block
        if utf16_len(joined) <= budget:
            text, ids = joined, ids + block_ids
            continue
        if text:
            parts.append((text, ids))
        # A story too long for one message: its buttons go under its last piece.
        pieces = split_html(block, budget)
        for piece in pieces[:-1]:
            parts.append((piece, ()))
        text, ids = pieces[-1], block_ids
    parts.append((text, ids))

    if len(parts) == 1:
        return [TelegramPart(html=parts[0][0], story_ids=parts[0][1])]
    total = len(parts)
    return [
        TelegramPart(html=f"<i>({n}/{total})</i>\n{body}", story_ids=story_ids)
        for n, (body, story_ids) in enumerate(parts, start=1)
    ]


def render_telegram(digest: Digest, *, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Telegram HTML messages, each within `limit` UTF-16 code units."""
    return [part.html for part in telegram_parts(digest, limit=limit)]


def _fit(text: str, limit: int) -> list[str]:
    return [text] if utf16_len(text) <= limit else split_html(text, limit)


def _tokens(fragment: str) -> Iterator[str]:
    """Tags, entities and grapheme-like clusters: the units we never cut inside."""
    pending = ""
    for match in _TOKEN.finditer(fragment):
        token = match.group(0)
        if pending and len(token) == 1 and _joins_previous(pending, token):
            pending += token
            continue
        if pending:
            yield pending
        pending = token
    if pending:
        yield pending


def _joins_previous(previous: str, char: str) -> bool:
    """Keep combining marks, ZWJ sequences, variation selectors and skin tones."""
    if previous.startswith(("<", "&")) and len(previous) > 1:
        return False
    if previous.endswith("\u200d"):
        return True
    code = ord(char)
    return (
        char == "\u200d"
        or 0xFE00 <= code <= 0xFE0F
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
        or unicodedata.combining(char) != 0
        or (0x1F1E6 <= code <= 0x1F1FF and _odd_regional_run(previous))
    )


def _odd_regional_run(previous: str) -> bool:
    count = sum(1 for c in previous if 0x1F1E6 <= ord(c) <= 0x1F1FF)
    return count % 2 == 1 and len(previous) == count


def _closers(stack: list[tuple[str, str]]) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(stack))


def _openers(stack: list[tuple[str, str]]) -> str:
    return "".join(tag for _, tag in stack)


def split_html(fragment: str, limit: int) -> list[str]:
    """Split balanced HTML into pieces within `limit` UTF-16 units.

    Cuts fall on a line break if one is near, else on a space, else between
    two characters; never inside a tag, an entity or a surrogate pair. Tags
    open at a cut are closed before it and opened again after it.
    """
    tokens = list(_tokens(fragment))
    pieces: list[str] = []
    start = 0
    stack: list[tuple[str, str]] = []
    while start < len(tokens):
        prefix = _openers(stack)
        size = utf16_len(prefix)
        local = list(stack)
        best_line: tuple[int, list[tuple[str, str]]] | None = None
        best_space: tuple[int, list[tuple[str, str]]] | None = None
        index = start
        while index < len(tokens):
            token = tokens[index]
            grown = size + utf16_len(token)
            after = _apply_tag(local, token)
            if grown + utf16_len(_closers(after)) > limit and index > start:
                break
            size, local = grown, after
            index += 1
            if token == "\n":
                best_line = (index, list(local))
            elif token.isspace():
                best_space = (index, list(local))
        if index >= len(tokens):
            pieces.append(prefix + "".join(tokens[start:]) + _closers(local))
            break
        cut = best_line or best_space
        if cut is None or cut[0] <= start:
            cut = (index, local)
        end, end_stack = cut
        body = "".join(tokens[start:end]).rstrip("\n ")
        pieces.append(prefix + body + _closers(end_stack))
        while end < len(tokens) and tokens[end] in ("\n", " "):
            end += 1
        start, stack = end, end_stack
    return [piece for piece in pieces if piece.strip()]


def _apply_tag(stack: list[tuple[str, str]], token: str) -> list[tuple[str, str]]:
    if not token.startswith("<") or len(token) < 3:
        return stack
    match = _TAG_NAME.match(token)
    if match is None:
        return stack
    name = match.group(1).lower()
    if token.startswith("</"):
        for position in range(len(stack) - 1, -1, -1):
            if stack[position][0] == name:
                return stack[:position]
        return stack
    if token.endswith("/>"):
        return stack
    return [*stack, (name, token)]


# Console -----------------------------------------------------------------


def render_text(digest: Digest) -> str:
    """The digest as plain text for a terminal."""
    labels = _labels(digest.lang)
    lines = [_title(digest), _generated(digest)]
    if clean(digest.opening):
        lines += ["", clean(digest.opening)]
    if not digest.entries:
        if not clean(digest.opening):
            lines += ["", labels["empty"]]
        return "\n".join(lines) + "\n"

    for number, entry in enumerate(digest.entries, start=1):
        summary = entry.summary
        lines += ["", f"{number}. {headline(entry, digest.lang)}"]
        if summary_text(summary):
            lines.append(f"   {summary_text(summary)}")
        lines.extend(f"   • {fact}" for fact in extra_facts(summary))
        lines.append(f"   [{method_note(summary, digest.lang)}]")
        if entry.links:
            shown = []
            for link in entry.links:
                label = ownership_label(link.ownership, digest.lang)
                name = clean(link.name) or clean(link.url)
                text = f"{name} ({label})" if label else name
                url = safe_url(link.url)
                shown.append(f"{text} <{url}>" if url else text)
            lines.append(f"   {labels['sources']}: " + "; ".join(shown))
    return "\n".join(lines) + "\n"


# HTML page ---------------------------------------------------------------

_PAGE_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto;
       padding: 0 1rem; color: #1d1d1f; }
section { border-top: 2px solid #c8102e; margin-top: 2.5rem; padding-top: .5rem; }
article { margin: 1.5rem 0; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; } h3 { font-size: 1.05rem; }
.meta, .note { color: #666; font-size: .9rem; }
.note.extractive, .note.extractive-fallback { color: #8a5a00; }
.note.failed { color: #b00020; }
ul { padding-left: 1.2rem; }
"""


def _page_story(number: int, entry: DigestEntry, lang: str) -> str:
    summary = entry.summary
    out = [f"<article>\n<h3>{number}. {escape(headline(entry, lang))}</h3>"]
    if summary_text(summary):
        out.append(f"<p>{escape(summary_text(summary))}</p>")
    if extra_facts(summary):
        facts = "".join(f"<li>{escape(fact)}</li>" for fact in extra_facts(summary))
        out.append(f"<ul>{facts}</ul>")
    css = " ".join(
        escape_attr(re.sub(r"[^a-z-]", "", value.lower()))
        for value in (summary.method, summary.verdict)
    )
    out.append(f'<p class="note {css}">{escape(method_note(summary, lang))}</p>')
    if entry.links:
        shown = []
        for link in entry.links:
            name, suffix = _link_text(link, lang)
            url = safe_url(link.url)
            if url:
                shown.append(
                    f'<a href="{escape_attr(url)}" rel="noopener noreferrer">'
                    f"{name}</a>{suffix}"
                )
            else:
                shown.append(f"{name}{suffix}")
        label = _labels(lang)["sources"]
        out.append(f'<p class="meta">{label}: {", ".join(shown)}</p>')
    out.append("</article>")
    return "\n".join(out)


def _page_section(digest: Digest) -> str:
    labels = _labels(digest.lang)
    heading = (
        f"{labels['reader']} {escape(digest.reader_id)} · "
        f"{escape(digest.lang)} · {labels['edition']} {escape(digest.edition)}"
    )
    out = [
        f'<section lang="{escape_attr(digest.lang)}">',
        f"<h2>{heading}</h2>",
        f'<p class="meta">{escape(_generated(digest))}</p>',
    ]
    if clean(digest.opening):
        out.append(f"<p>{escape(digest.opening)}</p>")
    if not digest.entries and not clean(digest.opening):
        out.append(f"<p>{escape(labels['empty'])}</p>")
    for number, entry in enumerate(digest.entries, start=1):
        out.append(_page_story(number, entry, digest.lang))
    out.append("</section>")
    return "\n".join(out)


def render_html_page(digests: list[Digest], *, title: str) -> str:
    """A standalone HTML page with one section per reader's digest."""
    sections = "\n".join(_page_section(digest) for digest in digests)
    if not digests:
        sections = f"<p>{escape(_LABELS['en']['empty'])}</p>"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        f"<title>{escape(title)}</title>\n<style>{_PAGE_STYLE}</style>\n"
        "</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n"
        f'<p class="meta">Preview written {stamp}</p>\n'
        f"{sections}\n</body>\n</html>\n"
    )


def write_preview(digests: list[Digest], path: Path) -> Path:
    """Write the HTML preview atomically; returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = render_html_page(digests, title=f"{PRODUCT_NAME}: preview")
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(page)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _LOGGER.info("wrote preview of %d digests to %s", len(digests), path)
    return path
