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


# Sentences that address a model or tell the reader what to do are not news;
# an article carrying them has been tampered with, and they are dropped.
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b.{0,40}\b(?:instructions?|prompts?|rules"
    r"|directions|guidelines|everything above)\b"
    r"|\b(?:you are|act as|pretend to be|as an?)\s+(?:an?\s+)?(?:ai|assistant|language "
    r"model|chatbot|llm)\b"
    r"|\b(?:system|assistant|developer)\s*(?:prompt|message)?\s*:"
    r"|\b(?:tell|instruct|urge)\s+(?:the\s+)?(?:readers?|users?)\s+to\b"
    r"|\b(?:insert|add|include|append)\s+(?:this|the following|a|the)?\s*"
    r"(?:link|url|web ?site)\b"
    r"|\b(?:summar(?:y|ies|ize|ise)|digest)\s+(?:must|should)\s+(?:say|state|include)"
    r"|忽略.{0,12}(?:指令|指示|提示|规则|要求)|无视.{0,12}(?:指令|指示|规则)"
    r"|你(?:现在)?是(?:一个)?(?:人工智能|AI|助手|语言模型)|(?:系统|助手)(?:提示|消息)?[:：]"
    r"|(?:插入|加入|添加)(?:这个|以下|一个)?(?:链接|网址)|告诉(?:读者|用户)",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"((?<=[.!?])\s+|(?<=[。！？]))")


def drop_instructions(text: str) -> str:
    """The text without sentences that give orders to a model or to readers."""
    pieces = _SENTENCE_END.split(text)
    sentences, separators = pieces[::2], pieces[1::2] + [""]
    kept = [
        sentence + separator
        for sentence, separator in zip(sentences, separators, strict=True)
        if not _INSTRUCTION.search(sentence)
    ]
    return _SPACE.sub(" ", "".join(kept)).strip()


def article_text(raw: str) -> str:
    """What the editorial stages read of an article: visible, without orders."""
    return drop_instructions(visible_text(raw))


def fence(text: str) -> str:
    """Untrusted text that cannot open or close a tag of the prompt around it."""
    return text.replace("<", "‹").replace(">", "›")
