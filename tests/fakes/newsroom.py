"""A model for the fake vendors that reads its prompts: a faithful writer, an
honest checker and a plain opening line, told apart by their system prompts.

Install it with `newsroom(server)`: every vendor of a `FakeLLMServer`
answers through it. The writer copies the first two sentences of the first
article in the requested language, and names the articles that state its
key fact; when no article is in that language it says only that outlets in
the other language reported the story, which is true of every story. The
checker supports a sentence when one article sentence holds three quarters
of its words and quotes that sentence verbatim; a sentence in a language no
article is written in is judged against the first article, as a bilingual
checker would. Each answer is a JSON object, as the prompts ask.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from functions.extractive import split_sentences
from functions.textnorm import is_cjk
from functions.topics import fold, infer_topics, tokens
from tests.llm_fakes import FakeLLMServer, Reply

_ARTICLE = re.compile(
    r'<article id="(?P<alias>A\d+)"[^>]*\blang="(?P<lang>[a-z]+)"[^>]*>\n'
    r"title: (?P<title>[^\n]*)\n(?P<body>.*?)\n</article>",
    re.DOTALL,
)
# (headline, sentence) of a story no article of which is in the asked language
CROSS_LANGUAGE = {
    "en": (
        "A report in Chinese-language media",
        "Chinese-language outlets reported this story.",
    ),
    "zh": ("一则英文媒体的报道", "英文媒体报道了这则新闻。"),
}
OPENING = {
    "en": "Here is your China digest for today.",
    "zh": "这是您今天的中国新闻摘要。",
}


@dataclass
class Article:
    alias: str
    lang: str
    title: str
    text: str


def articles_in(prompt: str) -> list[Article]:
    """The fenced articles of a prompt, in order."""
    return [
        Article(m["alias"], m["lang"], m["title"], m["body"])
        for m in _ARTICLE.finditer(prompt)
    ]


def numbered_sentences(prompt: str) -> list[str]:
    """The numbered summary sentences a fact-check prompt asks about."""
    tail = prompt.split("Summary sentences to check:", 1)[1]
    return [m.group(1) for m in re.finditer(r"^\d+\. (.*)$", tail, re.MULTILINE)]


def _lang_asked(prompt: str) -> str:
    return (
        "zh"
        if re.search(r"^Write the \w+ in Simplified Chinese", prompt, re.M)
        else "en"
    )


def _script(text: str) -> str:
    return "zh" if is_cjk(fold(text)) else "en"


def write(prompt: str) -> dict[str, Any]:
    """A summary from the first article in the asked language."""
    lang = _lang_asked(prompt)
    articles = articles_in(prompt)
    mine = [a for a in articles if a.lang == lang]
    everything = " ".join(f"{a.title} {a.text}" for a in articles)
    if mine:
        first = mine[0]
        sentences = split_sentences(first.text)[:2]
        carriers = [a.alias for a in mine if sentences[0] in a.text]
        headline = first.title
        facts = [{"text": sentences[0], "articles": carriers}]
    else:
        headline, sentence = CROSS_LANGUAGE[lang]
        sentences, facts = [sentence], []
    return {
        "headline": headline,
        "sentences": sentences,
        "key_facts": facts,
        "topics": infer_topics(everything),
        "importance": min(0.9, 0.3 + 0.15 * len(articles)),
    }


def check(prompt: str) -> dict[str, Any]:
    """A verdict per sentence, with a verbatim quote for each supported one."""
    articles = articles_in(prompt)
    judgements = []
    for n, sentence in enumerate(numbered_sentences(prompt), 1):
        same = [a for a in articles if _script(a.text) == _script(sentence)]
        if not same:
            quote = split_sentences(articles[0].text)[0]
            judgements.append(_supported(n, quote, articles[0].alias))
            continue
        mine = tokens(sentence)
        share, quote, alias = max(
            (len(mine & tokens(s)) / (len(mine) or 1), s, a.alias)
            for a in same
            for s in split_sentences(a.text)
        )
        if share >= 0.75:
            judgements.append(_supported(n, quote, alias))
        else:
            judgements.append(
                {"sentence": n, "verdict": "unsupported", "note": "not stated"}
            )
    return {"judgements": judgements}


def _supported(n: int, quote: str, alias: str) -> dict[str, Any]:
    return {"sentence": n, "verdict": "supported", "quote": quote, "article": alias}


def open_digest(prompt: str) -> dict[str, Any]:
    return {"line": OPENING[_lang_asked(prompt)]}


class Newsroom:
    """Answers every request by its stage; counts the stages each vendor served."""

    def __init__(self) -> None:
        self.served: Counter[tuple[str, str]] = Counter()

    def respond_as(self, vendor: str) -> Any:
        def respond(body: dict[str, Any]) -> Reply:
            messages = body.get("messages") or body["input"]["messages"]
            system = messages[0]["content"]
            prompt = next(m["content"] for m in messages if m["role"] == "user")
            if system.startswith("You write one entry"):
                stage, answer = "summarize", write(prompt)
            elif system.startswith("You are a careful fact-checker"):
                stage, answer = "factcheck", check(prompt)
            elif system.startswith("You write the single opening line"):
                stage, answer = "opening", open_digest(prompt)
            else:
                return Reply.failure(vendor, 400, "unknown prompt")
            self.served[vendor, stage] += 1
            return Reply(content=json.dumps(answer, ensure_ascii=False))

        return respond


def newsroom(server: FakeLLMServer) -> Newsroom:
    """Make every vendor of `server` answer as the newsroom."""
    room = Newsroom()
    for name, vendor in server.vendors.items():
        vendor.respond = room.respond_as(name)
    return room
