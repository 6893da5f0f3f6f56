"""Telegram's HTML parse mode, as strict as the Bot API documents it.

`parse_html` returns the text a message keeps after parsing, or raises
`ValueError` with the message Telegram gives ("can't parse entities: ...").
"""

from __future__ import annotations

import html
import re

ALLOWED_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span",
    "tg-spoiler", "a", "tg-emoji", "code", "pre", "blockquote",
}  # fmt: skip
NAMED_ENTITIES = {"lt", "gt", "amp", "quot"}

_TOKEN = re.compile(
    r"<(/?)([A-Za-z-]*)([^<>]*)>|&(#x[0-9a-fA-F]+|#[0-9]+|[A-Za-z]+);|[<>&]"
)
_HREF = re.compile(r"""^\s*href\s*=\s*"([^"]*)"\s*$""")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> str:
    """The visible text of a Telegram HTML message; ValueError when it is invalid."""
    out: list[str] = []
    stack: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        out.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in "<>&":
            raise ValueError(
                f"can't parse entities: unexpected {token!r} at byte offset "
                f"{len(text[: match.start()].encode())}"
            )
        if match.group(4) is not None:
            entity = match.group(4)
            if not entity.startswith("#") and entity not in NAMED_ENTITIES:
                raise ValueError(f"can't parse entities: unsupported entity {entity}")
            out.append(html.unescape(token))
            continue
        closing, name, attrs = match.group(1), match.group(2).lower(), match.group(3)
        if name not in ALLOWED_TAGS:
            raise ValueError(f'can\'t parse entities: unsupported start tag "{name}"')
        if closing:
            if not stack or stack[-1] != name:
                raise ValueError(f'can\'t parse entities: unmatched end tag "{name}"')
            stack.pop()
            continue
        if name == "a":
            found = _HREF.match(attrs)
            if found is None:
                raise ValueError("can't parse entities: bad link")
            href = html.unescape(found.group(1))
            if not re.match(r"^(https?|tg)://", href):
                raise ValueError("can't parse entities: bad link URL")
        elif attrs.strip() and name not in ("span", "tg-emoji", "code", "pre"):
            raise ValueError(f"can't parse entities: attributes on {name}")
        stack.append(name)
    out.append(text[position:])
    if stack:
        raise ValueError(f"can't parse entities: can't find end tag for {stack[-1]}")
    return "".join(out)
