"""What one news day's model calls would cost, from the prompts they really send.

    python bench/cost_bench.py --db digest.db       # the stories `digest run` stored
    python bench/cost_bench.py --sources PATH       # collect and cluster PATH first

For every story and language (en, zh) it builds the messages the summarize
and fact-check stages send (system prompt with its JSON-schema tail, then
the fenced articles) and counts their tokens with DeepSeek's published
ratio: 0.3 token per Latin character, 0.6 per Chinese character. Nothing
is sent anywhere, so completions are sized at the limits the prompts set:
a headline, sentences up to DIGEST_SUMMARY_MAX_CHARS(_ZH), four key facts;
one judgement with a 40-word quote per sentence. The system part counts as
a prefix-cache hit, the rest as a miss.

It then prices the day with the dated `prices.toml` (writer deepseek-flash,
checker qwen-plus: the default chain, which puts the check on another
provider) and prints a month for 1, 100 and 1,000 readers. Summaries per day
lie between one per story and language (every member arrived before the first
digest that saw the story) and two per item and language (every new member
changed a story's member set before a digest, and every draft was written
twice). Estimates, not a bill: `digest cost` reads the real ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from functions.chat import LANGUAGE_NAMES, article_block, pick_articles  # noqa: E402
from functions.cluster import recent_stories  # noqa: E402
from functions.factcheck import CheckOutput, story_items  # noqa: E402
from functions.opening import HEADLINES, OpeningOut  # noqa: E402
from functions.prompt_text import load_prompt  # noqa: E402
from functions.run import RunOptions, run_job  # noqa: E402
from functions.summarize import HEADLINE_LIMITS, SummaryOut  # noqa: E402
from infra.config import Settings  # noqa: E402
from infra.llm.prices import PriceTable  # noqa: E402
from infra.llm.providers import Usage  # noqa: E402
from infra.llm.structured import schema_instruction  # noqa: E402
from infra.store import Store  # noqa: E402

CJK = re.compile(r"[\u2e80-\u9fff\u3000-\u303f\uf900-\ufaff\uff00-\uffef]")
LATIN_TOKENS, CJK_TOKENS = 0.3, 0.6
LANGS = ("en", "zh")
DAYS = 30
# A weekday at 10:00 and at 20:00 Beijing time: DeepSeek's peak and off-peak.
PEAK = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
OFF_PEAK = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
WRITER = ("deepseek", "deepseek-flash")
CHECKER = ("qwen", "qwen-plus")
ALTERNATIVES = [
    ("deepseek", "deepseek-flash"),
    ("qwen", "qwen-plus"),
    ("qwen", "qwen-flash"),
    ("openai", "gpt-6-luna"),
    ("openai", "gpt-5.4-nano"),
]


def tokens(text: str) -> int:
    """DeepSeek's rule of thumb for its tokenizer."""
    cjk = len(CJK.findall(text))
    return round(cjk * CJK_TOKENS + (len(text) - cjk) * LATIN_TOKENS)


def fill(chars: int, lang: str) -> str:
    return ("中" if lang == "zh" else "a") * chars


def summary_chars(lang: str, settings: Settings) -> int:
    return settings.summary_max_chars_zh if lang == "zh" else settings.summary_max_chars


@dataclass
class Call:
    cached: int
    uncached: int
    completion: int

    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.cached + self.uncached,
            cache_hit_tokens=self.cached,
            cache_miss_tokens=self.uncached,
            completion_tokens=self.completion,
        )


def summary_call(block_text: str, lang: str, settings: Settings) -> Call:
    """The summarize stage's request for one story in `lang`, and a full answer."""
    prompt = load_prompt("summarize")
    max_chars = summary_chars(lang, settings)
    system = f"{prompt.system}\n\n{schema_instruction(SummaryOut)}"
    user = prompt.render(
        language=LANGUAGE_NAMES[lang],
        headline_limit=HEADLINE_LIMITS[lang][0],
        max_sentences=str(settings.summary_max_sentences),
        max_chars=str(max_chars),
        articles=block_text,
        notes="",
    )
    answer = {
        "headline": fill(HEADLINE_LIMITS[lang][1] * 2 // 3, lang),
        "sentences": [fill(max_chars // 3, lang) for _ in range(3)],
        "key_facts": [
            {"text": fill(max_chars // 5, lang), "articles": ["A1", "A2"]}
            for _ in range(4)
        ],
        "topics": ["economy", "trade"],
        "importance": 0.5,
    }
    completion = tokens(json.dumps(answer, ensure_ascii=False))
    return Call(tokens(system), tokens(user), completion)


def check_call(block_text: str, lang: str, quote_lang: str, settings: Settings) -> Call:
    """The fact-check request for a full summary in `lang`, and a full answer."""
    prompt = load_prompt("factcheck")
    max_chars = summary_chars(lang, settings)
    n = settings.summary_max_sentences
    sentences = "\n".join(f"{i}. {fill(max_chars // n, lang)}" for i in range(1, n + 1))
    system = f"{prompt.system}\n\n{schema_instruction(CheckOutput)}"
    user = prompt.render(articles=block_text, sentences=sentences)
    quote = fill(60, "zh") if quote_lang == "zh" else " ".join(["word"] * 40)
    answer = {
        "judgements": [
            {
                "sentence": i,
                "verdict": "supported",
                "quote": quote,
                "article": "A1",
                "note": "",
            }
            for i in range(1, n + 1)
        ]
    }
    completion = tokens(json.dumps(answer, ensure_ascii=False))
    return Call(tokens(system), tokens(user), completion)


def opening_call(lang: str) -> Call:
    """One reader's opening line: five headlines and their topics."""
    prompt = load_prompt("opening")
    system = f"{prompt.system}\n\n{schema_instruction(OpeningOut)}"
    headline = fill(HEADLINE_LIMITS[lang][1] * 2 // 3, lang)
    user = prompt.render(
        language=LANGUAGE_NAMES[lang],
        topics="economy, technology, diplomacy",
        headlines="\n".join(f"- {headline}" for _ in range(HEADLINES)),
    )
    line = {"line": fill(120 if lang == "en" else 40, lang)}
    completion = tokens(json.dumps(line, ensure_ascii=False))
    return Call(tokens(system), tokens(user), completion)


def price(table: PriceTable, model: tuple[str, str], call: Call, at: datetime) -> float:
    return table.cost(model[0], model[1], call.usage(), at)[0]


def load_day(args: argparse.Namespace) -> tuple[Store, Settings]:
    """The store to read: the one given, or a temporary one filled from sources."""
    if args.db:
        settings = Settings(DIGEST_DB=args.db)  # type: ignore[call-arg]
        return Store(settings.store_url), settings
    db = Path(tempfile.mkdtemp(prefix="cost-bench-")) / "day.db"
    settings = Settings(DIGEST_DB=db)  # type: ignore[call-arg]
    store = Store(settings.store_url)
    options = RunOptions(
        sources_path=Path(args.sources), edit=False, deliver=False, save=False
    )
    asyncio.run(run_job(settings, store, options))
    return store, settings


def spread(values: list[int]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"mean {statistics.mean(values):7.0f}  p90 {p90:6d}  max {max(values):6d}"


def main(args: argparse.Namespace) -> None:
    store, settings = load_day(args)
    stories = recent_stories(store, since=datetime(1970, 1, 1, tzinfo=UTC))
    ids = sorted({i for s in stories for i in s.member_ids})
    items_by_id = {i.id: i for i in store.get_items(ids)}
    store.close()
    table = PriceTable.load(settings.digest_prices)

    calls: dict[str, list[Call]] = {"summarize": [], "factcheck": []}
    per_lang: dict[str, list[tuple[Call, Call]]] = {lang: [] for lang in LANGS}
    for story in stories:
        items = story_items(story, items_by_id)
        if not items:
            continue
        for lang in LANGS:
            block = article_block(pick_articles(items, lang))
            quote_lang = "zh" if block.items and block.items[0].lang == "zh" else "en"
            write = summary_call(block.text, lang, settings)
            check = check_call(block.text, lang, quote_lang, settings)
            calls["summarize"].append(write)
            calls["factcheck"].append(check)
            per_lang[lang].append((write, check))

    n_stories, n_items = len(stories), len(items_by_id)
    print(f"{n_items} items, {n_stories} stories; tokens per call (estimated):")
    for stage, found in calls.items():
        prompts = [c.cached + c.uncached for c in found]
        print(f"  {stage:<10} prompt     {spread(prompts)}")
        print(f"  {'':<10} cached     {spread([c.cached for c in found])}")
        print(f"  {'':<10} completion {spread([c.completion for c in found])}")
    openings = {lang: opening_call(lang) for lang in LANGS}
    o = openings["en"]
    print(f"  opening    prompt {o.cached + o.uncached}, completion {o.completion}")

    print("\none summary and its check, dollars (writer / checker):")
    story_cost: dict[str, float] = {}
    for lang in LANGS:
        pairs = per_lang[lang]
        peak = statistics.mean(
            price(table, WRITER, w, PEAK) + price(table, CHECKER, c, PEAK)
            for w, c in pairs
        )
        off = statistics.mean(
            price(table, WRITER, w, OFF_PEAK) + price(table, CHECKER, c, OFF_PEAK)
            for w, c in pairs
        )
        story_cost[lang] = peak
        print(
            f"  {lang}  {WRITER[1]} / {CHECKER[1]}: ${peak:.5f} peak, ${off:.5f}"
            " off-peak"
        )
    pair = [c for found in per_lang.values() for c in found]
    for model in ALTERNATIVES:
        both = statistics.mean(
            price(table, model, w, PEAK) + price(table, model, c, PEAK) for w, c in pair
        )
        print(f"  both calls on {model[1]:<15} ${both:.5f}")

    print(f"\na month ({DAYS} days) at DeepSeek's peak price, this day every day:")
    print(
        f"{'readers':>8} {'langs':>6} {'summaries/day':>16} {'openings/day':>13}"
        f" {'LLM $/month':>16}"
    )
    for readers in (1, 100, 1000):
        langs = LANGS[:1] if readers == 1 else LANGS
        low_n = n_stories * len(langs)
        high_n = 2 * n_items * len(langs)
        per = statistics.mean(story_cost[lang] for lang in langs)
        opening = price(table, WRITER, openings["en"], PEAK) * readers
        low = (low_n * per + opening) * DAYS
        high = (high_n * per + opening) * DAYS
        print(
            f"{readers:>8} {len(langs):>6} {low_n:>7}-{high_n:<8} {readers:>13}"
            f"   {low:6.2f}-{high:6.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help="a SQLite file written by `digest run`")
    where.add_argument("--sources", help="a sources TOML or a directory of feeds")
    main(parser.parse_args())
