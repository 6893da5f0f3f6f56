"""What the editorial stages ask of the LLM chain, and how they show it articles."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pydantic import BaseModel

from functions.extractive import base_lang
from functions.models import Item
from functions.untrusted import article_text, fence, visible_text
from infra.llm import LLMResult

SchemaT = TypeVar("SchemaT", bound=BaseModel)

# Per article and in all: enough for the lead and the facts, bounded in cost.
ARTICLE_CHARS = 2400
ARTICLES_CHARS = 9000
MAX_ARTICLES = 6

LANGUAGE_NAMES = {"en": "English", "zh": "Simplified Chinese"}


class ChatChain(Protocol):
    """The part of `infra.llm.LLMChain` the editorial stages use."""

    providers: list[str]

    async def complete_json(
        self,
        schema: type[SchemaT],
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
    ) -> LLMResult[SchemaT]: ...


def has_model(chain: ChatChain | None) -> bool:
    return chain is not None and bool(chain.providers)


@dataclass
class ArticleBlock:
    """Articles as the prompt shows them, under short aliases (A1, A2, ...)."""

    text: str
    alias_to_id: dict[str, str]
    items: list[Item]

    def item_id(self, alias: str) -> str | None:
        return self.alias_to_id.get(alias.strip().upper())


def pick_articles(
    items: list[Item], lang: str, limit: int = MAX_ARTICLES
) -> list[Item]:
    """The members a model reads: the reader's language first, fullest first,
    at most one per source (wire copies add cost, not facts)."""
    lang = base_lang(lang)
    ordered = sorted(
        items,
        key=lambda i: (
            base_lang(i.lang) != lang,
            -len(article_text(i.text)),
            i.published,
            i.id,
        ),
    )
    chosen: list[Item] = []
    seen_sources: set[str] = set()
    for item in ordered:
        if item.source in seen_sources:
            continue
        seen_sources.add(item.source)
        chosen.append(item)
    rest = [i for i in ordered if i not in chosen]
    return (chosen + rest)[:limit]


def article_block(
    items: list[Item], source_names: dict[str, str] | None = None
) -> ArticleBlock:
    """Each article fenced in <article> tags; its text cannot close the fence."""
    names = source_names or {}
    parts: list[str] = []
    aliases: dict[str, str] = {}
    budget = ARTICLES_CHARS
    for n, item in enumerate(items, start=1):
        alias = f"A{n}"
        aliases[alias] = item.id
        body = article_text(item.text)[: min(ARTICLE_CHARS, max(budget, 400))]
        budget -= len(body)
        source = fence(names.get(item.source, item.source))
        parts.append(
            f'<article id="{alias}" source="{source}"'
            f' lang="{base_lang(item.lang)}" published="{item.published:%Y-%m-%d}">\n'
            f"title: {fence(visible_text(item.title))}\n"
            f"{fence(body)}\n"
            "</article>"
        )
    return ArticleBlock(text="\n".join(parts), alias_to_id=aliases, items=list(items))
