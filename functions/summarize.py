"""Summaries: each story once per language, fact-checked, cached, never empty.

A summary is cached by story, language, member set and prompt versions, so
cost grows with stories, not readers, and a story that gains no member is
never summarized twice. A draft that fails its fact-check is written once
more with the checker's findings; if that fails too, or no model answers,
the story gets its extractive summary, marked as such.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import Counter
from dataclasses import asdict, fields as dataclass_fields
from typing import Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import insert, select

from functions.chat import (
    LANGUAGE_NAMES,
    ArticleBlock,
    ChatChain,
    article_block,
    has_model,
    pick_articles,
)
from functions.extractive import base_lang, extractive_summary, split_sentences
from functions.factcheck import (
    FactCheckReport,
    apply_verdicts,
    check_summary,
    regeneration_notes,
    save_verdicts,
    story_items,
)
from functions.models import Item, KeyFact, Story, Summary
from functions.prompt_text import load_prompt, prompt_tag
from functions.topics import TOPIC_KEYWORDS, fold, infer_topics
from functions.untrusted import visible_text
from infra import db
from infra.config import Settings
from infra.llm import LLMError
from infra.store import Store, utcnow

_LOGGER = logging.getLogger(__name__)

# (what the prompt asks, the hard cut in characters)
HEADLINE_LIMITS = {"en": ("12 words", 110), "zh": ("25 characters", 40)}
# A single sentence this many times the budget is not a summary at all.
RUNAWAY_FACTOR = 2
# Anything that would put a link or markup in front of a reader.
LINK_OR_MARKUP = re.compile(
    r"https?:|www\.|\]\(|<\s*/?\s*[a-z]|&lt;|\b[\w-]+\.(?:com|net|org|io|cn|ly|info"
    r"|xyz|me|co|top|site|link)\b(?:/|\b)",
    re.IGNORECASE,
)


class KeyFactOut(BaseModel):
    text: str
    articles: list[str] = Field(default_factory=list)


class SummaryOut(BaseModel):
    """The structure a writer model must return."""

    headline: str = Field(min_length=1)
    sentences: list[str] = Field(min_length=1)
    key_facts: list[KeyFactOut] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list)
    importance: float = 0.5

    @field_validator("importance")
    @classmethod
    def _clamp(cls, value: float) -> float:
        return min(1.0, max(0.0, value))


class InvalidDraft(ValueError):
    """A writer's output that cannot become a summary (empty after cleaning)."""


def member_key(story: Story) -> str:
    """The member set as a key: a new member is a new key."""
    joined = "\n".join(sorted(set(story.member_ids)))
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


def prompt_versions() -> str:
    """Both prompts a checked summary depends on, e.g. `summarize.v1+factcheck.v1`."""
    return (
        f"{prompt_tag(load_prompt('summarize'))}+{prompt_tag(load_prompt('factcheck'))}"
    )


def fit_length(
    sentences: list[str], lang: str, *, max_sentences: int, max_chars: int
) -> list[str]:
    """At most `max_sentences` whole sentences within `max_chars`; never a cut
    inside a sentence. Empty if even the first sentence runs away."""
    whole = [s for text in sentences for s in split_sentences(text)]
    kept: list[str] = []
    used = 0
    for sentence in whole:
        if len(kept) >= max_sentences:
            break
        if kept and used + len(sentence) > max_chars:
            break
        if not kept and len(sentence) > RUNAWAY_FACTOR * max_chars:
            return []
        kept.append(sentence)
        used += len(sentence)
    return kept


def _max_chars(lang: str, settings: Settings) -> int:
    return settings.summary_max_chars_zh if lang == "zh" else settings.summary_max_chars


def _clean_headline(text: str, lang: str, fallback: str) -> str:
    headline = visible_text(text).strip(' "“”')
    if not headline or LINK_OR_MARKUP.search(headline):
        headline = visible_text(fallback)
    limit = HEADLINE_LIMITS.get(lang, HEADLINE_LIMITS["en"])[1]
    if len(headline) > limit:
        cut = headline[:limit]
        headline = (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(",;:，") + "…"
    return headline


def _topics(labels: list[str], text: str) -> list[str]:
    canonical = [fold(t).strip() for t in labels]
    topics = [t for t in dict.fromkeys(canonical) if t in TOPIC_KEYWORDS][:3]
    return topics or infer_topics(text)


def draft_from_output(
    out: SummaryOut,
    story: Story,
    block: ArticleBlock,
    lang: str,
    *,
    provider: str,
    prompt_version: str,
    settings: Settings,
) -> Summary:
    """A summary from a writer's JSON: length cut, links and markup removed,
    article aliases mapped back to item ids."""
    sentences = fit_length(
        [visible_text(s) for s in out.sentences],
        lang,
        max_sentences=settings.summary_max_sentences,
        max_chars=_max_chars(lang, settings),
    )
    sentences = [s for s in sentences if not LINK_OR_MARKUP.search(s)]
    if not sentences:
        raise InvalidDraft("no usable sentence")

    facts: list[KeyFact] = []
    for fact in out.key_facts[:4]:
        text = visible_text(fact.text)
        ids = [i for a in fact.articles if (i := block.item_id(a))]
        if text and ids and not LINK_OR_MARKUP.search(text):
            facts.append(KeyFact(text=text, item_ids=list(dict.fromkeys(ids))))

    return Summary(
        story_id=story.id,
        lang=lang,
        headline=_clean_headline(out.headline, lang, story.title),
        sentences=sentences,
        key_facts=facts,
        topics=_topics(out.topics, " ".join(sentences)),
        importance=out.importance,
        method="llm",
        provider=provider,
        prompt_version=prompt_version,
    )


async def write_draft(
    chain: ChatChain,
    story: Story,
    items: list[Item],
    lang: str,
    *,
    settings: Settings,
    notes: str = "",
    source_names: dict[str, str] | None = None,
) -> Summary:
    """One model-written summary of one story, validated; raises LLMError."""
    prompt = load_prompt("summarize")
    block = article_block(pick_articles(items, lang), source_names)
    headline_limit = HEADLINE_LIMITS.get(lang, HEADLINE_LIMITS["en"])[0]
    if notes:
        notes = (
            "Your previous draft had statements the articles do not support. "
            "Leave them out:\n" + notes
        )
    result = await chain.complete_json(
        SummaryOut,
        stage="summarize",
        system=prompt.system,
        user=prompt.render(
            language=LANGUAGE_NAMES.get(lang, lang),
            headline_limit=headline_limit,
            max_sentences=str(settings.summary_max_sentences),
            max_chars=str(_max_chars(lang, settings)),
            articles=block.text,
            notes=notes,
        ),
        prompt_version=prompt_tag(prompt),
        source=block.items[0].source if block.items else None,
        max_tokens=900,
    )
    return draft_from_output(
        result.value,
        story,
        block,
        lang,
        provider=result.provider,
        prompt_version=prompt_tag(prompt),
        settings=settings,
    )


def _fallback(story: Story, items: list[Item], lang: str, verdict: str) -> Summary:
    summary = extractive_summary(story, items, lang)
    summary.method = "extractive-fallback"
    summary.verdict = verdict
    return summary


async def _checked_extractive(
    story: Story,
    items: list[Item],
    lang: str,
    settings: Settings,
    source_names: dict[str, str] | None,
) -> Summary:
    """The extractive summary through the deterministic pass, for its attribution.

    Its sentences are the articles' own, so the pass rarely drops one; what it
    adds is which claims two independent sources carry and which only one.
    """
    summary = extractive_summary(story, items, lang)
    report = await check_summary(None, summary, items, source_names=source_names)
    checked = apply_verdicts(
        summary,
        report,
        min_kept=settings.factcheck_min_kept,
        source_names=source_names,
    )
    return checked or summary


async def summarize_story(
    store: Store,
    chain: ChatChain | None,
    story: Story,
    items: list[Item],
    lang: str,
    *,
    settings: Settings,
    source_names: dict[str, str] | None = None,
    stats: Counter[str] | None = None,
) -> Summary:
    """The checked summary of one story in one language (cached)."""
    stats = stats if stats is not None else Counter()
    lang = base_lang(lang)
    if not has_model(chain):
        stats["extractive"] += 1
        return await _checked_extractive(story, items, lang, settings, source_names)
    assert chain is not None

    key = member_key(story)
    versions = prompt_versions()
    cached = load_summary(store, story.id, lang, key, versions)
    if cached is not None:
        stats["cached"] += 1
        return cached

    notes = ""
    for attempt in (1, 2):
        try:
            draft = await write_draft(
                chain,
                story,
                items,
                lang,
                settings=settings,
                notes=notes,
                source_names=source_names,
            )
        except LLMError as exc:
            # Not cached: a model may answer on the next run.
            _LOGGER.warning("no model summary for %s/%s: %s", story.id, lang, exc)
            stats["fallback-unavailable"] += 1
            return _fallback(story, items, lang, "unchecked")
        except InvalidDraft as exc:
            _LOGGER.info("unusable draft for %s/%s: %s", story.id, lang, exc)
            notes = "- the draft had no complete sentence without links or markup"
            stats["invalid-draft"] += 1
            continue

        report = await check_summary(chain, draft, items, source_names=source_names)
        save_verdicts(
            store,
            draft,
            report,
            member_key=key,
            prompt_version=versions,
            attempt=attempt,
        )
        checked = apply_verdicts(
            draft,
            report,
            min_kept=settings.factcheck_min_kept,
            source_names=source_names,
        )
        if checked is not None:
            checked.prompt_version = versions
            if report.model_error:
                # Checked by the deterministic pass alone: not kept, so the
                # next run checks it again (the chain's own cache spares the writer).
                stats["unchecked-by-model"] += 1
            else:
                save_summary(store, checked, key, versions)
            stats["regenerated" if attempt == 2 else "written"] += 1
            return checked
        notes = regeneration_notes(report) or notes
        _log_rejection(story, lang, attempt, report)

    fallback = _fallback(story, items, lang, "failed")
    fallback.prompt_version = versions
    save_summary(store, fallback, key, versions)
    stats["fallback-failed-check"] += 1
    return fallback


def _log_rejection(
    story: Story, lang: str, attempt: int, report: FactCheckReport
) -> None:
    _LOGGER.info(
        "draft %d for %s/%s kept %d of %d sentences",
        attempt,
        story.id,
        lang,
        len(report.kept),
        len(report.checks),
    )


async def summarize_stories(
    store: Store,
    chain: ChatChain | None,
    stories: list[Story],
    items_by_id: dict[str, Item],
    langs: list[str],
    *,
    settings: Settings,
    source_names: dict[str, str] | None = None,
    stats: Counter[str] | None = None,
) -> dict[tuple[str, str], Summary]:
    """Every story in every wanted language, with bounded concurrency."""
    stats = stats if stats is not None else Counter()
    wanted = list(dict.fromkeys(base_lang(lang) for lang in langs))
    limit = asyncio.Semaphore(max(1, settings.summary_concurrency))

    async def one(story: Story, lang: str) -> tuple[tuple[str, str], Summary] | None:
        items = story_items(story, items_by_id)
        if not items:
            stats["no-items"] += 1
            return None
        async with limit:
            summary = await summarize_story(
                store,
                chain,
                story,
                items,
                lang,
                settings=settings,
                source_names=source_names,
                stats=stats,
            )
        return (story.id, lang), summary

    results = await asyncio.gather(*(one(s, lang) for s in stories for lang in wanted))
    summaries = dict(r for r in results if r is not None)
    _LOGGER.info(
        "summarized %d stories in %s: %s",
        len(stories),
        ",".join(wanted),
        dict(sorted(stats.items())),
    )
    return summaries


# The cache ------------------------------------------------------------------


def save_summary(store: Store, summary: Summary, key: str, versions: str) -> None:
    table = db.summaries
    row = dict(
        story_id=summary.story_id,
        lang=summary.lang,
        member_key=key,
        prompt_version=versions,
    )
    with store.begin() as conn:
        exists = conn.execute(
            select(table.c.story_id).where(*(table.c[k] == v for k, v in row.items()))
        ).first()
        if exists:
            return
        conn.execute(
            insert(table).values(
                **row,
                method=summary.method,
                provider=summary.provider,
                verdict=summary.verdict,
                payload=asdict(summary),
                created_at=utcnow(),
            )
        )


def load_summary(
    store: Store, story_id: str, lang: str, key: str, versions: str
) -> Summary | None:
    table = db.summaries
    with store.begin() as conn:
        row = conn.execute(
            select(table.c.payload).where(
                table.c.story_id == story_id,
                table.c.lang == lang,
                table.c.member_key == key,
                table.c.prompt_version == versions,
            )
        ).first()
    return None if row is None else summary_from_dict(row.payload)


def summary_from_dict(data: dict[str, Any]) -> Summary:
    """A stored summary; fields a later version dropped are ignored."""
    known = {f.name for f in dataclass_fields(Summary)}
    fact_fields = {f.name for f in dataclass_fields(KeyFact)}
    values = {k: v for k, v in data.items() if k in known}
    values["key_facts"] = [
        KeyFact(**{k: v for k, v in f.items() if k in fact_fields})
        for f in values.get("key_facts", [])
    ]
    return Summary(**values)


def latest_topics(store: Store, story_ids: list[str]) -> dict[str, list[str]]:
    """The topics any stored summary gave each story (for feedback without topics)."""
    if not story_ids:
        return {}
    table = db.summaries
    with store.begin() as conn:
        rows = conn.execute(
            select(table.c.story_id, table.c.payload)
            .where(table.c.story_id.in_(story_ids))
            .order_by(table.c.created_at)
        ).all()
    return {r.story_id: list(r.payload.get("topics", [])) for r in rows}
