"""Article text is untrusted data: what a reader would see, and nothing more.

Feeds may carry text a browser never shows (comments, scripts, hidden
elements, zero-width and tag characters). Such text can hide instructions
meant for a model, so it is removed before any stage reads an article, and
the visible rest is fenced so it cannot pass for the prompt's own words.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

# Zero-width, bidirectional control and Unicode tag characters (which can
# spell out invisible ASCII).
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]"
)
_SPACE = re.compile(r"\s+")
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9])"
    r"|opacity\s*:\s*0(?![.\d]*[1-9])|(?:max-)?(?:height|width)\s*:\s*0(?:px)?\s*(?:;|$)"
    r"|clip\s*:\s*rect\(\s*0|left\s*:\s*-\d{3,}|text-indent\s*:\s*-\d{3,}",
    re.IGNORECASE,
)
_NEVER_SHOWN = frozenset({"script", "style", "template", "noscript", "head", "title"})
_VOID = frozenset(
    "area base br col embed hr img input link meta param source track wbr".split()
)
_BLOCK = frozenset("p div br li h1 h2 h3 h4 h5 h6 tr blockquote section".split())


def _hidden(tag: str, attrs: list[tuple[str, str | None]]) -> bool:
    if tag in _NEVER_SHOWN:
        return True
    for name, value in attrs:
        if name == "hidden":
            return True
        if name == "aria-hidden" and (value or "").lower() == "true":
            return True
        if name == "style" and value and _HIDDEN_STYLE.search(value):
            return True
        if name == "type" and tag == "input" and (value or "").lower() == "hidden":
            return True
    return False


class _VisibleText(HTMLParser):
    """Collects the text outside hidden elements; comments are dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._stack: list[tuple[str, bool]] = []

    @property
    def _inside_hidden(self) -> bool:
        return any(hidden for _, hidden in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self.parts.append(" ")
        if tag not in _VOID:
            self._stack.append((tag, _hidden(tag, attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._stack) - 1, -1, -1):
            if self._stack[depth][0] == tag:
                del self._stack[depth:]
                break
        if tag in _BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._inside_hidden:
            self.parts.append(data)


def visible_text(raw: str) -> str:
    """The text a browser would show, on one line; plain text passes through."""
    if "<" in raw and ">" in raw:
        parser = _VisibleText()
        parser.feed(raw)
        parser.close()
        raw = "".join(parser.parts)
    else:
        raw = html.unescape(raw)
    return _SPACE.sub(" ", _INVISIBLE.sub("", raw)).strip()


def fence(text: str) -> str:
    """Untrusted text that cannot open or close a tag of the prompt around it."""
    return text.replace("<", "‹").replace(">", "›")
