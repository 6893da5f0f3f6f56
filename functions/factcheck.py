"""The fact-check: every sentence of a summary against the story's own articles.

Two passes. The deterministic pass finds every number, date, quote and
named entity of a sentence in the member articles (after normalization)
and compares the negation of each clause with the article clauses that
say the same thing. The model pass, by a different provider from the
writer where two are configured, judges each sentence and must quote its
evidence; the quote is checked against the articles, and a quote that is
not there counts as no evidence.

Policy (applied by `apply_verdicts`): unsupported and contradicted
sentences are removed; a summary that keeps too little is redone by the
caller. Claims two independent sources carry are corroborated; the rest
are attributed to their one source.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import delete, insert

from functions.chat import ChatChain, article_block, has_model, pick_articles
from functions.claims import (
    DateRef,
    Number,
    comparable,
    date_supported,
    entity_problem,
    extract_claims,
    extract_dates,
    extract_numbers,
    is_negated,
    number_supported,
    quote_in,
    split_clauses,
    strip_negation,
)
from functions.extractive import base_lang, split_sentences
from functions.models import Item, KeyFact, Story, Summary
from functions.prompt_text import load_prompt, prompt_tag
from functions.topics import fold, tokens
from functions.untrusted import article_text, visible_text
from infra import db
from infra.llm import LLMError
from infra.store import Store, utcnow

_LOGGER = logging.getLogger(__name__)

Verdict = Literal["supported", "unsupported", "contradicted", "unchecked"]

# An article clause sharing this share of the smaller clause's words (and at
# least two) says the same thing, so their negations must agree.
NEGATION_OVERLAP = 0.5
# A model's evidence quote shorter than this (comparable characters) proves nothing.
# A Chinese character counts twice: it carries about two letters' worth of news,
# so a whole short Chinese sentence (这是央行今年第二次降准, 11 characters) is evidence.
MIN_QUOTE_CHARS = 12
# Two copies of one text (a wire story republished) are one source, not two.
COPY_SIMILARITY = 0.5


class Judgement(BaseModel):
    sentence: int = Field(ge=1)
    verdict: Literal["supported", "unsupported", "contradicted"]
    quote: str = ""
    article: str = ""
    note: str = ""


class CheckOutput(BaseModel):
    judgements: list[Judgement]


@dataclass
class SentenceCheck:
    index: int
    sentence: str
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # independent ones
    evidence: str = ""
    model_verdict: str = ""


@dataclass
class FactCheckReport:
    """Per-sentence verdicts of both passes on one summary."""

    checks: list[SentenceCheck]
    key_facts: list[KeyFact]
    checker: str = ""  # the provider of the model pass; "" if it did not run
    model_error: str = ""

    @property
    def kept(self) -> list[SentenceCheck]:
        return [c for c in self.checks if c.verdict in ("supported", "unchecked")]

    @property
    def kept_share(self) -> float:
        return len(self.kept) / len(self.checks) if self.checks else 0.0


@dataclass
class _Article:
    """One member article, read once: visible text and what it states."""

    item: Item
    text: str
    folded: str
    numbers: list[Number]
    dates: list[DateRef]
    sentences: list[tuple[str, set[str]]]
    clauses: list[_Clause]


@dataclass
class _Clause:
    text: str
    words: set[str]  # without the negation words
    negated: bool


def _clauses(text: str) -> list[_Clause]:
    return [
        _Clause(c.strip(), tokens(strip_negation(c)), is_negated(c))
        for sentence in split_sentences(text)
        for c in split_clauses(sentence)
        if c.strip()
    ]


def _read(item: Item) -> _Article:
    text = visible_text(item.title) + ". " + article_text(item.text)
    dates, blanked = extract_dates(text)
    numbers = extract_numbers(blanked) + extract_numbers(text)
    return _Article(
        item=item,
        text=text,
        folded=fold(text),
        numbers=numbers,
        dates=dates,
        sentences=[(s, tokens(s)) for s in split_sentences(text)],
        clauses=_clauses(text),
    )


class Evidence:
    """The member articles of one story, prepared for the deterministic pass."""

    def __init__(self, items: list[Item]) -> None:
        self.articles = [_read(i) for i in items]
        self.years = {i.published.year for i in items}
        self._groups = _independent_groups(self.articles)

    def in_lang(self, lang: str) -> list[_Article]:
        return [a for a in self.articles if base_lang(a.item.lang) == base_lang(lang)]

    def independent_sources(self, item_ids: list[str]) -> list[str]:
        """One source name per independent group among these articles."""
        names: dict[int, str] = {}
        for article in self.articles:
            if article.item.id in item_ids:
                group = self._groups[article.item.id]
                names.setdefault(group, article.item.source)
        return sorted(set(names.values()))


def _shingles(text: str, size: int = 5) -> set[str]:
    flat = re.sub(r"\s+", " ", text)
    return {flat[i : i + size] for i in range(max(1, len(flat) - size + 1))}


def _independent_groups(articles: list[_Article]) -> dict[str, int]:
    """Group copies: same source, or texts that are mostly the same."""
    parent = list(range(len(articles)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    shingles = [_shingles(a.folded) for a in articles]
    for i in range(len(articles)):
        for j in range(i + 1, len(articles)):
            same_source = articles[i].item.source == articles[j].item.source
            union = len(shingles[i] | shingles[j]) or 1
            copy = len(shingles[i] & shingles[j]) / union >= COPY_SIMILARITY
            if same_source or copy:
                parent[find(i)] = find(j)
    return {a.item.id: find(n) for n, a in enumerate(articles)}


def check_deterministic(
    sentence: str, evidence: Evidence, lang: str
) -> tuple[list[str], list[str]]:
    """Problems found in one sentence, and the ids of the articles carrying it."""
    claims = extract_claims(sentence)
    same_lang = evidence.in_lang(lang)
    reasons: list[str] = []
    carriers: list[set[str]] = []

    for number in claims.numbers:
        ids = {
            a.item.id for a in evidence.articles if number_supported(number, a.numbers)
        }
        if not ids and number.kind == "plain" and number.value in evidence.years:
            ids = {a.item.id for a in evidence.articles}
        _note(ids, carriers, reasons, f"number not in the articles: {number.text}")
    for ref in claims.dates:
        ids = {
            a.item.id
            for a in evidence.articles
            if date_supported(ref, a.dates, {a.item.published.year})
        }
        _note(ids, carriers, reasons, f"date not in the articles: {ref.text}")
    # Names and quotes are only compared within a language; an article in
    # another language that carries the sentence's numbers and dates still counts.
    other_lang = set.union(set(), *carriers) - {a.item.id for a in same_lang}
    for quote in claims.quotes:
        ids = {a.item.id for a in same_lang if quote_in(quote, a.text)}
        reason = (
            f"quoted words not in any article: “{quote}”"
            if same_lang
            else f"a quote cannot be verbatim across languages: “{quote}”"
        )
        _note(ids | other_lang if ids else ids, carriers, reasons, reason)
    if same_lang:
        for entity in claims.entities:
            problem = entity_problem(entity, [a.text for a in same_lang])
            if problem:
                reasons.append(problem)
                continue
            ids = {
                a.item.id for a in same_lang if entity_problem(entity, [a.text]) is None
            }
            carriers.append(ids | other_lang)

    negation = _negation_problem(sentence, same_lang)
    if negation:
        reasons.append(negation)
    if not carriers:
        mine = tokens(sentence)
        lexical = {
            a.item.id
            for a in same_lang
            if any(_overlap(mine, theirs) >= 0.2 for _, theirs in a.sentences)
        }
        if lexical:
            carriers.append(lexical)

    item_ids: set[str] = set.intersection(*carriers) if carriers else set()
    if carriers and not item_ids:
        item_ids = max(carriers, key=len)
    return reasons, sorted(item_ids)


def _note(
    ids: set[str], carriers: list[set[str]], reasons: list[str], reason: str
) -> None:
    if ids:
        carriers.append(ids)
    else:
        reasons.append(reason)


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a) if a else 0.0


def _negation_problem(sentence: str, articles: list[_Article]) -> str | None:
    """A clause the articles state one way and the summary the other way.

    Clauses, not sentences, are compared: "progress was made but no deal was
    reached" holds a negation that "progress was made" must not inherit.
    """
    for clause in _clauses(sentence):
        if len(clause.words) < 3:
            continue
        matches = []
        for article in articles:
            for other in article.clauses:
                shared = len(clause.words & other.words)
                smaller = min(len(clause.words), len(other.words)) or 1
                if shared >= 2 and shared / smaller >= NEGATION_OVERLAP:
                    matches.append((shared / smaller, other))
        if not matches:
            continue
        closest = max(matches, key=lambda m: m[0])[1].text
        if clause.negated and not any(o.negated for _, o in matches):
            return f"negation differs from the article: {closest}"
        if not clause.negated and all(o.negated for _, o in matches):
            return f"negation differs from the article: {closest}"
    return None


# The model pass -------------------------------------------------------------


def _quote_problem(
    judgement: Judgement, sentence: str, evidence: Evidence, block_ids: dict[str, str]
) -> tuple[str | None, list[str]]:
    """Why a supported verdict's quote is no evidence, or None and where it is."""
    quote = judgement.quote.strip().strip("\"“”「」'")
    if _quote_weight(quote) < MIN_QUOTE_CHARS:
        return "the checker gave no evidence quote", []
    named = block_ids.get(judgement.article.strip().upper())
    found = [a for a in evidence.articles if quote_in(quote, a.text)]
    if not found:
        return f"the checker's quote is not in any article: “{quote}”", []
    same_lang = [a for a in found if _same_script(sentence, a.text)]
    if same_lang:
        shared = tokens(sentence) & tokens(quote)
        if not shared and not _shares_number(sentence, quote):
            return "the checker's quote has nothing in common with the sentence", []
    ids = [a.item.id for a in found]
    return None, ([named] if named in ids else ids)


def _quote_weight(quote: str) -> int:
    """Comparable characters of a quote, each Chinese character counted twice."""
    flat = comparable(quote)
    return len(flat) + len(re.findall(r"[\u3400-\u9fff]", flat))


def _same_script(a: str, b: str) -> bool:
    def cjk(text: str) -> bool:
        return len(re.findall(r"[\u3400-\u9fff]", text)) > len(text) / 10

    return cjk(a) == cjk(b)


def _shares_number(a: str, b: str) -> bool:
    theirs = extract_numbers(b)
    return any(number_supported(n, theirs) for n in extract_numbers(a))


async def _model_pass(
    chain: ChatChain,
    summary: Summary,
    items: list[Item],
    *,
    source_names: dict[str, str] | None,
) -> tuple[dict[int, Judgement], str, dict[str, str]]:
    prompt = load_prompt("factcheck")
    block = article_block(pick_articles(items, summary.lang), source_names)
    numbered = "\n".join(f"{n}. {s}" for n, s in enumerate(summary.sentences, 1))
    result = await chain.complete_json(
        CheckOutput,
        stage="factcheck",
        system=prompt.system,
        user=prompt.render(articles=block.text, sentences=numbered),
        prompt_version=prompt_tag(prompt),
        source=items[0].source if items else None,
        avoid=[summary.provider] if summary.provider else (),
        max_tokens=1200,
    )
    judgements = {j.sentence: j for j in result.value.judgements}
    return judgements, result.provider, block.alias_to_id


async def check_summary(
    chain: ChatChain | None,
    summary: Summary,
    items: list[Item],
    *,
    source_names: dict[str, str] | None = None,
) -> FactCheckReport:
    """Both passes over every sentence and key fact of one summary."""
    evidence = Evidence(items)
    judgements: dict[int, Judgement] = {}
    checker = model_error = ""
    aliases: dict[str, str] = {}
    if has_model(chain) and summary.sentences:
        assert chain is not None
        try:
            judgements, checker, aliases = await _model_pass(
                chain, summary, items, source_names=source_names
            )
        except LLMError as exc:
            model_error = f"{type(exc).__name__}: {exc}"
            _LOGGER.warning(
                "model fact-check unavailable for %s: %s", summary.story_id, exc
            )

    checks = [
        _combine(
            n, sentence, evidence, summary.lang, judgements, aliases, bool(checker)
        )
        for n, sentence in enumerate(summary.sentences, 1)
    ]
    for check in checks:
        check.sources = evidence.independent_sources(check.item_ids)
    return FactCheckReport(
        checks=checks,
        key_facts=_check_key_facts(summary, evidence),
        checker=checker,
        model_error=model_error,
    )


def _combine(
    index: int,
    sentence: str,
    evidence: Evidence,
    lang: str,
    judgements: dict[int, Judgement],
    aliases: dict[str, str],
    model_ran: bool,
) -> SentenceCheck:
    reasons, item_ids = check_deterministic(sentence, evidence, lang)
    check = SentenceCheck(index=index, sentence=sentence, verdict="supported")
    check.reasons, check.item_ids = reasons, item_ids

    judgement = judgements.get(index)
    if judgement is not None:
        check.model_verdict = judgement.verdict
        if judgement.verdict == "supported":
            problem, quoted_ids = _quote_problem(judgement, sentence, evidence, aliases)
            if problem:
                check.reasons.append(problem)
            else:
                check.evidence = judgement.quote.strip()
                check.item_ids = sorted(set(item_ids) | set(quoted_ids))
        else:
            note = f": {judgement.note}" if judgement.note else ""
            check.reasons.append(f"the checker judged it {judgement.verdict}{note}")

    if judgement is not None and judgement.verdict == "contradicted":
        check.verdict = "contradicted"
    elif check.reasons:
        check.verdict = "unsupported"
    elif model_ran and judgement is None:
        check.verdict = "unchecked"
        check.reasons.append("the checker gave no verdict")
    return check


def _check_key_facts(summary: Summary, evidence: Evidence) -> list[KeyFact]:
    """Keep the key facts the articles carry, with who carries them."""
    known = {a.item.id for a in evidence.articles}
    kept: list[KeyFact] = []
    for fact in summary.key_facts:
        reasons, found = check_deterministic(fact.text, evidence, summary.lang)
        if reasons:
            continue
        claimed = [i for i in fact.item_ids if i in known]
        item_ids = found or claimed
        if not item_ids:
            continue
        sources = evidence.independent_sources(item_ids)
        kept.append(
            KeyFact(
                text=fact.text,
                item_ids=item_ids,
                corroborated=len(sources) >= 2,
                sources=sources,
            )
        )
    return kept


# Policy ---------------------------------------------------------------------


def apply_verdicts(
    summary: Summary,
    report: FactCheckReport,
    *,
    min_kept: float,
    source_names: dict[str, str] | None = None,
) -> Summary | None:
    """The summary without its unsupported sentences, attributed; None if it
    kept less than `min_kept` of them (the caller redoes or falls back)."""
    if not report.kept or report.kept_share < min_kept:
        return None
    names = source_names or {}
    kept = report.kept
    dropped = len(report.checks) - len(kept)
    complete = bool(report.checker) and all(c.verdict == "supported" for c in kept)
    return replace(
        summary,
        sentences=[c.sentence for c in kept],
        key_facts=[
            replace(f, sources=[names.get(s, s) for s in f.sources])
            for f in report.key_facts
        ],
        sentence_sources=[[names.get(s, s) for s in c.sources] for c in kept],
        verdict=_verdict(complete, dropped, bool(report.checker)),
        checker=report.checker,
    )


def _verdict(complete: bool, dropped: int, model_checked: bool) -> str:
    """verified: both passes, nothing dropped; facts-checked: the deterministic
    pass alone (no model), nothing dropped; partly-verified otherwise."""
    if complete and not dropped:
        return "verified"
    if not model_checked and not dropped:
        return "facts-checked"
    return "partly-verified"


_VERDICT_NOTES = {
    "en": {
        "verified": "Checked against the articles",
        "partly-verified": "Partly checked against the articles",
        "facts-checked": "Figures and names checked against the articles",
        "extractive": "Excerpt from {source}",
        "unchecked": "Not checked",
    },
    "zh": {
        "verified": "已对照原文核实",
        "partly-verified": "已部分对照原文核实",
        "facts-checked": "数字与人名已对照原文核实",
        "extractive": "摘自{source}",
        "unchecked": "未经核实",
    },
}


def verdict_note(summary: Summary, source: str = "") -> str:
    """How a digest says what the fact-check found, in the summary's language."""
    notes = _VERDICT_NOTES["zh" if summary.lang == "zh" else "en"]
    if summary.method in ("extractive", "extractive-fallback"):
        return notes["extractive"].format(source=source) if source else ""
    return notes.get(summary.verdict, notes["unchecked"])


def regeneration_notes(report: FactCheckReport) -> str:
    """What the writer got wrong, for its one second attempt."""
    lines = [
        f"- “{c.sentence}”: {'; '.join(c.reasons) or c.verdict}"
        for c in report.checks
        if c.verdict not in ("supported", "unchecked")
    ]
    return "\n".join(lines)


def save_verdicts(
    store: Store,
    summary: Summary,
    report: FactCheckReport,
    *,
    member_key: str,
    prompt_version: str,
    attempt: int,
) -> None:
    """Store one draft's verdicts (replacing a previous run's for the same draft)."""
    key = dict(
        story_id=summary.story_id,
        lang=summary.lang,
        member_key=member_key,
        prompt_version=prompt_version,
        attempt=attempt,
    )
    table = db.fact_checks
    now = utcnow()
    rows = [
        dict(
            key,
            sentence_index=c.index,
            sentence=c.sentence,
            verdict=c.verdict,
            reasons=c.reasons,
            evidence=c.evidence or None,
            item_ids=c.item_ids,
            writer=summary.provider,
            checker=report.checker,
            created_at=now,
        )
        for c in report.checks
    ]
    with store.begin() as conn:
        conn.execute(
            delete(table).where(
                *(table.c[name] == value for name, value in key.items())
            )
        )
        if rows:
            conn.execute(insert(table), rows)


def load_verdicts(store: Store, story_id: str, lang: str) -> list[dict[str, object]]:
    """Every stored verdict for a story in one language, newest draft last."""
    table = db.fact_checks
    with store.begin() as conn:
        rows = conn.execute(
            table.select()
            .where(table.c.story_id == story_id, table.c.lang == lang)
            .order_by(table.c.created_at, table.c.attempt, table.c.sentence_index)
        ).all()
    return [dict(r._mapping) for r in rows]


def story_items(story: Story, items_by_id: dict[str, Item]) -> list[Item]:
    return [items_by_id[i] for i in story.member_ids if i in items_by_id]
