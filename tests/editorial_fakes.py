"""A fake of the LLM chain with the real `complete_json` interface, and model
behaviours to script it with: a faithful writer, a careful checker, and
writers that make the errors the fact-check exists to catch."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from functions.extractive import split_sentences
from functions.models import Item, Story
from functions.topics import tokens
from infra.llm import LLMResult, LLMUnavailable

Handler = Callable[[str], "dict[str, Any] | Exception"]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FakeChain:
    """Answers `complete_json` per stage from scripted handlers, validating the
    answer with the caller's schema as the real chain does, and records calls."""

    def __init__(
        self,
        *,
        providers: Collection[str] = ("deepseek", "qwen"),
        summarize: Handler | None = None,
        factcheck: Handler | None = None,
        opening: Handler | None = None,
    ) -> None:
        self.providers = list(providers)
        self.handlers = {
            "summarize": summarize,
            "factcheck": factcheck,
            "opening": opening,
        }
        self.calls: list[dict[str, Any]] = []

    def stage_calls(self, stage: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["stage"] == stage]

    async def complete_json(
        self,
        schema: type[BaseModel],
        *,
        stage: str,
        system: str,
        user: str,
        prompt_version: str,
        source: str | None = None,
        reader_id: str | None = None,
        avoid: Collection[str] = (),
        optional: bool = False,
        max_tokens: int = 1024,
    ) -> LLMResult[Any]:
        order = [p for p in self.providers if p not in avoid]
        order += [p for p in self.providers if p in avoid]
        self.calls.append(
            dict(
                stage=stage,
                system=system,
                user=user,
                prompt_version=prompt_version,
                source=source,
                reader_id=reader_id,
                avoid=list(avoid),
                optional=optional,
                provider=order[0] if order else "",
            )
        )
        handler = self.handlers.get(stage)
        if handler is None or not order:
            raise LLMUnavailable({p: f"{stage} not scripted" for p in self.providers})
        answer = handler(user)
        if isinstance(answer, Exception):
            raise answer
        return LLMResult(
            value=schema.model_validate(answer),
            provider=order[0],
            model=f"{order[0]}-chat",
            cached=False,
            prompt_version=prompt_version,
            cost_usd=0.0004,
        )


# Reading a prompt the way a model would -----------------------------------

_ARTICLE = re.compile(r'<article id="(A\d+)"[^>]*>\n(.*?)\n</article>', re.DOTALL)


def prompt_articles(user: str) -> dict[str, str]:
    """Alias → text of each fenced article in a prompt."""
    return {
        alias: body.split("\n", 1)[1] if "\n" in body else body
        for alias, body in _ARTICLE.findall(user)
    }


def prompt_sentences(user: str) -> list[str]:
    """The numbered sentences a fact-check prompt asks about."""
    tail = user.split("Summary sentences to check:", 1)[1]
    return [m.group(1) for m in re.finditer(r"^\d+\. (.*)$", tail, re.MULTILINE)]


# Model behaviours ----------------------------------------------------------


def summary_answer(
    sentences: list[str],
    headline: str = "Headline",
    *,
    facts: list[tuple[str, list[str]]] | None = None,
    topics: list[str] | None = None,
    importance: float = 0.6,
) -> dict[str, Any]:
    return {
        "headline": headline,
        "sentences": sentences,
        "key_facts": [{"text": t, "articles": a} for t, a in (facts or [])],
        "topics": topics or [],
        "importance": importance,
    }


def writes(*answers: dict[str, Any] | Exception) -> Handler:
    """A writer that gives these answers in turn (the last one again after)."""
    queue = list(answers)

    def handler(_user: str) -> dict[str, Any] | Exception:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler


def lead_writer(user: str) -> dict[str, Any]:
    """A faithful writer: the first two sentences of the first article."""
    articles = prompt_articles(user)
    first = next(iter(articles))
    sentences = split_sentences(articles[first])[:2]
    return summary_answer(sentences, facts=[(sentences[0], [first])])


def careful_checker(user: str) -> dict[str, Any]:
    """A checker that supports a sentence only when one article sentence has
    three quarters of its words, and then quotes that sentence verbatim."""
    articles = prompt_articles(user)
    judgements = []
    for n, sentence in enumerate(prompt_sentences(user), 1):
        mine = tokens(sentence)
        best = (0.0, "", "")
        for alias, text in articles.items():
            for candidate in split_sentences(text):
                share = len(mine & tokens(candidate)) / (len(mine) or 1)
                if share > best[0]:
                    best = (share, candidate, alias)
        if best[0] >= 0.75:
            judgements.append(
                {
                    "sentence": n,
                    "verdict": "supported",
                    "quote": best[1],
                    "article": best[2],
                }
            )
        else:
            judgements.append(
                {"sentence": n, "verdict": "unsupported", "note": "not stated"}
            )
    return {"judgements": judgements}


def judges(*verdicts: tuple[str, str, str]) -> Handler:
    """A checker that gives these (verdict, quote, article) in sentence order."""

    def handler(user: str) -> dict[str, Any]:
        count = len(prompt_sentences(user))
        chosen = list(verdicts)[:count]
        return {
            "judgements": [
                {"sentence": n, "verdict": v, "quote": q, "article": a}
                for n, (v, q, a) in enumerate(chosen, 1)
            ]
        }

    return handler


# Stories -------------------------------------------------------------------


def item(
    id: str,
    text: str,
    *,
    title: str = "",
    source: str = "",
    lang: str = "en",
    hours: float = 0,
) -> Item:
    return Item(
        source=source or f"source-{id}",
        url=f"https://news.example/{id}",
        title=title or text.split(".")[0][:60],
        text=text,
        lang=lang,
        published=T0 + timedelta(hours=hours),
        id=id,
    )


def story(id: str, *items: Item, hours: float = 0) -> Story:
    return Story(
        id=id,
        title=items[0].title,
        member_ids=[i.id for i in items],
        first_seen=T0 + timedelta(hours=hours),
        last_seen=T0 + timedelta(hours=hours),
        langs=sorted({i.lang for i in items}),
        sources=sorted({i.source for i in items}),
    )


# One story told by three outlets in two languages, and a copy of a wire story.
TRADE_EN_1 = (
    "China's exports rose 8.3% in February from a year earlier, customs data showed "
    "on Monday. The trade surplus widened to $92.4 billion, the General "
    "Administration of Customs said. Shipments to Southeast Asia grew fastest, "
    "while exports to the United States fell 2.1%. Premier Li Qiang said last week "
    "that the government would keep trade policy stable."
)
TRADE_EN_2 = (
    "Exports from China grew 8.3 percent in February, according to official figures "
    "released on Monday, March 2. The surplus reached 92.4 billion dollars. "
    "Economists had expected growth of about 5%. \u201cDemand from our neighbours "
    "held up better than we feared,\u201d said Zhou Min, an economist at Eastbridge "
    "Securities."
)
TRADE_ZH = (
    "海关总署3月2日（周一）公布的数据显示，2月份中国出口同比增长8.3%，贸易顺差为924亿"
    "美元。对东盟出口增长最快，对美国出口下降2.1%。国务院总理李强上周表示，将保持外贸"
    "政策稳定。"
)


def trade_items(*, with_copy: bool = False) -> list[Item]:
    items = [
        item("a1", TRADE_EN_1, title="China's exports rise 8.3%", source="Harbor Wire"),
        item(
            "a2",
            TRADE_EN_2,
            title="Chinese exports beat forecasts",
            source="Pacific Ledger",
            hours=1,
        ),
        item(
            "a3",
            TRADE_ZH,
            title="2月出口增长8.3%",
            source="东方日报",
            lang="zh",
            hours=2,
        ),
    ]
    if with_copy:
        items.append(
            item(
                "a4",
                TRADE_EN_1,
                title="China's exports rise 8.3% (Harbor Wire)",
                source="Coastline Daily",
                hours=3,
            )
        )
    return items
