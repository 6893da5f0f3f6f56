"""Offline evaluations of the editorial stages on the project's own samples.

`evaluate_factcheck` plants typical model errors (changed numbers, swapped
names, negations, invented quotes, wrong dates) in faithful reference
summaries and measures how many each fact-check pass catches, and how
often it flags a sentence that was right. `replay_rank` replays a feedback
log day by day and compares the ranking's nDCG with a recency-only order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from functions.chat import ChatChain, has_model
from functions.claims import extract_dates, extract_entities, extract_quotes, quote_in
from functions.extractive import base_lang
from functions.factcheck import Evidence, check_deterministic, check_summary
from functions.models import Item, Source, Story, Summary
from functions.rank import rank_for_reader
from functions.summarize import member_key, save_summary
from infra import db
from infra.config import Settings
from infra.readers import Reader
from infra.store import Store

_LOGGER = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parent / "samples"
STORIES_FILE = SAMPLES / "editorial_stories.json"
FEEDBACK_FILE = SAMPLES / "feedback_log.jsonl"
KINDS = ("number", "name", "negation", "quote", "date")
# Sentences per model call when the model pass judges planted sentences.
MODEL_BATCH = 8


@dataclass
class SampleStory:
    story: Story
    items: list[Item]
    reference: dict[str, list[str]]
    topics: list[str]
    importance: float
    day: int


def load_samples(
    path: Path = STORIES_FILE,
) -> tuple[list[SampleStory], dict[str, Source]]:
    """The sample stories with their articles, and their outlets as sources."""
    data = json.loads(path.read_text(encoding="utf-8"))
    sources = {
        name: Source(name=name, url="", ownership=s["ownership"], weight=s["weight"])
        for name, s in data["sources"].items()
    }
    samples = []
    for entry in data["stories"]:
        items = [
            Item(
                id=a["id"],
                source=a["source"],
                url=a["url"],
                title=a["title"],
                text=a["text"],
                lang=a["lang"],
                published=datetime.fromisoformat(a["published"].replace("Z", "+00:00")),
            )
            for a in entry["articles"]
        ]
        times = [i.published for i in items]
        story = Story(
            id=entry["id"],
            title=items[0].title,
            member_ids=[i.id for i in items],
            first_seen=min(times),
            last_seen=max(times),
            langs=sorted({i.lang for i in items}),
            sources=sorted({i.source for i in items}),
        )
        samples.append(
            SampleStory(
                story=story,
                items=items,
                reference=entry["reference"],
                topics=entry["topics"],
                importance=entry["importance"],
                day=entry["day"],
            )
        )
    return samples, sources


# Planting errors ----------------------------------------------------------------


@dataclass
class Plant:
    story_id: str
    lang: str
    kind: str  # "clean" or one of KINDS
    original: str
    sentence: str


def _pick(options: list[str], seed: str) -> str:
    """A deterministic choice, so the planted set is the same on every run."""
    digest = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    return options[digest % len(options)]


def _plant_number(sentence: str, _lang: str, _sample: SampleStory) -> str | None:
    _, blanked = extract_dates(sentence)
    for m in re.finditer(r"\d+(?:[.,]\d+)*", blanked):
        digits = m.group(0)
        if re.fullmatch(r"(?:19|20)\d\d", digits):
            continue
        end = m.end() - 1
        changed = str((int(sentence[end]) + 3) % 10)
        return sentence[:end] + changed + sentence[end + 1 :]
    return None


def _plant_name(
    sentence: str, lang: str, sample: SampleStory, pool: list[str]
) -> str | None:
    entities = [e for e in extract_entities(sentence) if e.text in sentence]
    if not entities:
        return None
    target = max(entities, key=lambda e: len(e.text))
    told = " ".join(i.title + " " + i.text for i in sample.items)
    options = [p for p in pool if p not in told and p not in sentence]
    if not options:
        return None
    swap = _pick(options, sample.story.id + lang + sentence)
    return sentence.replace(target.text, swap, 1)


_EN_NEGATIONS: list[tuple[str, str]] = [
    (r"\b(will|would|could|can)\b", r"\1 not"),
    (r"\b(was|were|is|are|has|have|had)\b", r"\1 not"),
]
_EN_PAST = {
    "said": "say", "rose": "rise", "fell": "fall", "grew": "grow", "set": "set",
    "kept": "keep", "left": "leave", "hit": "hit", "took": "take", "began": "begin",
    "found": "find", "forecast": "forecast", "put": "put", "opened": "open",
    "released": "release", "installed": "install", "delivered": "deliver",
    "sentenced": "sentence", "announced": "announce", "carried": "carry",
    "jumped": "jump", "dropped": "drop", "declined": "decline", "reached": "reach",
    "stayed": "stay", "pledged": "pledge", "called": "call", "issued": "issue",
    "sailed": "sail", "tracked": "track", "aimed": "aim", "raised": "raise",
    "started": "start", "added": "add", "expected": "expect", "operates": "operate",
    "cuts": "cut",
}  # fmt: skip
_ZH_NEGATIONS = [
    ("增长", "没有增长"), ("下降", "没有下降"), ("公布", "未公布"), ("发布", "未发布"),
    ("表示", "否认"), ("宣布", "未宣布"), ("发生", "未发生"), ("抵达", "未抵达"),
    ("上涨", "未上涨"), ("维持", "未维持"), ("提出", "未提出"), ("投产", "不会投产"),
    ("消散", "不会消散"), ("升空", "未能升空"), ("执飞", "未执飞"),
    ("运营", "不再运营"), ("涉嫌", "并不涉嫌"), ("接受", "拒绝接受"),
    ("受损", "未受损"), ("发表", "未发表"), ("削减", "不削减"), ("交付", "未交付"),
    ("安排", "不安排"), ("下跌", "没有下跌"), ("称", "否认"), ("为", "并非"),
]  # fmt: skip


def _plant_negation(sentence: str, lang: str, _sample: SampleStory) -> str | None:
    if lang == "zh":
        for word, negated in _ZH_NEGATIONS:
            if word in sentence:
                return sentence.replace(word, negated, 1)
        return None
    for pattern, replacement in _EN_NEGATIONS:
        changed = re.sub(pattern, replacement, sentence, count=1)
        if changed != sentence:
            return changed
    words = re.finditer(r"\b[a-z]+\b", sentence)
    for m in words:
        if m.group(0) in _EN_PAST:
            negated = "did not " + _EN_PAST[m.group(0)]
            return sentence[: m.start()] + negated + sentence[m.end() :]
    return None


def _plant_quote(sentence: str, lang: str, sample: SampleStory) -> str | None:
    """Words the articles never said, presented as a quote."""
    same_lang = [i.text for i in sample.items if base_lang(i.lang) == lang]
    if lang == "zh":
        invented = "称这是“一个历史性的转折点”"
        return sentence.rstrip("。") + "，" + invented + "。"
    words = sentence.rstrip(".").split()
    if len(words) >= 8 and not extract_quotes(sentence):
        phrase = " ".join(words[-5:])
        if same_lang and not any(quote_in(phrase, t) for t in same_lang):
            head = " ".join(words[:-5])
            return f"{head} “{phrase}”."
    return sentence.rstrip(".") + ", calling it “a turning point for the whole region”."


_WEEKDAYS = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
]
_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
]  # fmt: skip


def _plant_date(sentence: str, lang: str, _sample: SampleStory) -> str | None:
    if lang == "zh":
        m = re.search(r"(?:周|星期)([一二三四五六日])", sentence)
        if m:
            days = "一二三四五六日"
            later = days[(days.index(m.group(1)) + 1) % 7]
            return sentence[: m.start(1)] + later + sentence[m.end(1) :]
        m = re.search(r"(\d{1,2})(月)(\d{1,2})?", sentence)
        if m:
            part = 3 if m.group(3) else 1
            value = int(m.group(part)) % 12 + 1
            return sentence[: m.start(part)] + str(value) + sentence[m.end(part) :]
        m = re.search(r"(20\d\d)年", sentence)
        if m:
            return (
                sentence[: m.start(1)] + str(int(m.group(1)) - 1) + sentence[m.end(1) :]
            )
        return None
    for names in (_WEEKDAYS, _MONTHS):
        m = re.search(r"\b(" + "|".join(names) + r")\b", sentence)
        if m and not (names is _MONTHS and "Long March" in sentence):
            later = names[(names.index(m.group(1)) + 1) % len(names)]
            return sentence[: m.start()] + later + sentence[m.end() :]
    m = re.search(r"\b(20\d\d)\b", sentence)
    if m:
        return sentence[: m.start()] + str(int(m.group(1)) - 1) + sentence[m.end() :]
    return None


def plant_errors(samples: list[SampleStory]) -> list[Plant]:
    """Every reference sentence as it is, and with each kind of error that fits."""
    pools: dict[str, list[str]] = defaultdict(list)
    for sample in samples:
        for lang, sentences in sample.reference.items():
            for sentence in sentences:
                pools[lang].extend(
                    e.text for e in extract_entities(sentence) if e.text in sentence
                )
    pools = {lang: sorted(set(p)) for lang, p in pools.items()}

    planters: dict[str, Callable[[str, str, SampleStory], str | None]] = {
        "number": _plant_number,
        "name": lambda s, lang, sample: _plant_name(s, lang, sample, pools[lang]),
        "negation": _plant_negation,
        "quote": _plant_quote,
        "date": _plant_date,
    }
    plants: list[Plant] = []
    for sample in samples:
        for lang, sentences in sorted(sample.reference.items()):
            for sentence in sentences:
                plants.append(Plant(sample.story.id, lang, "clean", sentence, sentence))
                for kind, planter in planters.items():
                    changed = planter(sentence, lang, sample)
                    if changed and changed != sentence:
                        plants.append(
                            Plant(sample.story.id, lang, kind, sentence, changed)
                        )
    return plants


# The fact-check evaluation -------------------------------------------------------


@dataclass
class FactcheckScores:
    stories: int
    plants: list[Plant]
    deterministic: list[bool]
    with_model: list[bool] | None
    model: str = ""

    def _rates(self, flags: list[bool] | None) -> dict[str, Any]:
        if flags is None:
            return {"detection_rate": None, "false_alarm_rate": None, "by_kind": None}
        by_kind: dict[str, float] = {}
        for kind in KINDS:
            picked = [
                f for p, f in zip(self.plants, flags, strict=True) if p.kind == kind
            ]
            by_kind[kind] = _ratio(sum(picked), len(picked))
        planted = [
            f for p, f in zip(self.plants, flags, strict=True) if p.kind != "clean"
        ]
        clean = [
            f for p, f in zip(self.plants, flags, strict=True) if p.kind == "clean"
        ]
        return {
            "detection_rate": _ratio(sum(planted), len(planted)),
            "false_alarm_rate": _ratio(sum(clean), len(clean)),
            "by_kind": by_kind,
        }

    def as_dict(self) -> dict[str, Any]:
        counts = Counter(p.kind for p in self.plants)
        return {
            "stories": self.stories,
            "clean_sentences": counts["clean"],
            "planted_errors": sum(v for k, v in counts.items() if k != "clean"),
            "planted_by_kind": {k: counts[k] for k in KINDS},
            "deterministic": self._rates(self.deterministic),
            "with_model": self._rates(self.with_model),
            "model": self.model or None,
        }


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


async def evaluate_factcheck(
    samples: list[SampleStory], chain: ChatChain | None = None
) -> FactcheckScores:
    """Detection and false-alarm rates of the deterministic pass, and with the model."""
    plants = plant_errors(samples)
    by_story = {s.story.id: s for s in samples}
    evidence = {s.story.id: Evidence(s.items) for s in samples}
    deterministic = [
        bool(check_deterministic(p.sentence, evidence[p.story_id], p.lang)[0])
        for p in plants
    ]

    with_model: list[bool] | None = None
    model = ""
    if has_model(chain):
        with_model = list(deterministic)
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for n, plant in enumerate(plants):
            groups[(plant.story_id, plant.lang)].append(n)
        for (story_id, lang), indices in groups.items():
            for batch in _chunks(indices, MODEL_BATCH):
                summary = Summary(
                    story_id=story_id,
                    lang=lang,
                    headline="",
                    sentences=[plants[n].sentence for n in batch],
                )
                report = await check_summary(chain, summary, by_story[story_id].items)
                model = model or report.checker
                for n, check in zip(batch, report.checks, strict=True):
                    flagged = check.verdict in ("unsupported", "contradicted")
                    with_model[n] = with_model[n] or flagged
    return FactcheckScores(len(samples), plants, deterministic, with_model, model)


def _chunks(values: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# The ranking replay ----------------------------------------------------------------


@dataclass
class Tap:
    day: int
    reader: str
    story: str
    action: str
    topic: str = ""


@dataclass
class FeedbackLog:
    readers: list[Reader]
    taps: list[Tap] = field(default_factory=list)


def load_feedback_log(path: Path = FEEDBACK_FILE) -> FeedbackLog:
    """Readers (`"kind": "reader"`) and their taps by day (`"kind": "tap"`)."""
    log = FeedbackLog(readers=[])
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry["kind"] == "reader":
            log.readers.append(
                Reader(
                    id=entry["id"],
                    chat_id=entry["id"],
                    lang=entry.get("lang", "en"),
                    topics=entry.get("topics", []),
                    muted_topics=entry.get("muted_topics", []),
                )
            )
        elif entry["kind"] == "tap":
            log.taps.append(
                Tap(
                    day=entry["day"],
                    reader=entry["reader"],
                    story=entry["story"],
                    action=entry["action"],
                    topic=entry.get("topic", ""),
                )
            )
    return log


def ndcg(ranking: list[str], gains: dict[str, float], k: int) -> float:
    """Normalized discounted cumulative gain of a ranking at cut-off k."""
    dcg = sum(gains.get(s, 0.0) / math.log2(n + 2) for n, s in enumerate(ranking[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    best = sum(g / math.log2(n + 2) for n, g in enumerate(ideal))
    return dcg / best if best else 0.0


def replay_rank(
    samples: list[SampleStory],
    sources: dict[str, Source],
    log: FeedbackLog,
    *,
    k: int = 3,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Rank each day's stories for each reader with only the earlier days'
    taps known; score against that day's "more" taps; compare with recency
    and with the same ranking that never learns from taps."""
    settings = (settings or Settings()).model_copy(update={"rank_score_floor": -10.0})
    learning = _replay(samples, sources, log, k=k, settings=settings, learn=True)
    static = _replay(samples, sources, log, k=k, settings=settings, learn=False)
    for row, fixed in zip(learning, static, strict=True):
        row["without_feedback"] = fixed["ranked"]
    return {
        "k": k,
        "days": len({s.day for s in samples}),
        "readers": len(log.readers),
        "taps": len(log.taps),
        "evaluated": len(learning),
        "ndcg": _mean([r["ranked"] for r in learning]),
        "recency_ndcg": _mean([r["recency"] for r in learning]),
        "without_feedback_ndcg": _mean([r["without_feedback"] for r in learning]),
        "rows": learning,
    }


def _replay(
    samples: list[SampleStory],
    sources: dict[str, Source],
    log: FeedbackLog,
    *,
    k: int,
    settings: Settings,
    learn: bool,
) -> list[dict[str, Any]]:
    store = Store("sqlite://")
    rows: list[dict[str, Any]] = []
    try:
        summaries = _prepare_store(store, samples)
        outlets = {s.story.id: s.items[0].source for s in samples}
        start = min(s.story.first_seen for s in samples).replace(hour=0, minute=0)
        for day in sorted({s.day for s in samples}):
            now = start + timedelta(days=day, hours=23)
            if learn:
                taps = [t for t in log.taps if t.day == day - 1]
                _record_taps(store, taps, now, outlets)
            todays = [s.story for s in samples if s.day == day]
            recency = [
                s.id
                for s in sorted(todays, key=lambda s: (-s.last_seen.timestamp(), s.id))
            ]
            for reader in log.readers:
                gains = {
                    t.story: 1.0
                    for t in log.taps
                    if t.day == day and t.reader == reader.id and t.action == "more"
                }
                if not gains:
                    continue
                reader.digest_size = len(todays)
                entries = rank_for_reader(
                    reader,
                    todays,
                    summaries,
                    store=store,
                    now=now,
                    settings=settings,
                    sources=sources,
                )
                ranking = [e.story.id for e in entries]
                rows.append(
                    {
                        "day": day,
                        "reader": reader.id,
                        "ranked": round(ndcg(ranking, gains, k), 4),
                        "recency": round(ndcg(recency, gains, k), 4),
                    }
                )
    finally:
        store.close()
    return rows


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def _prepare_store(
    store: Store, samples: list[SampleStory]
) -> dict[tuple[str, str], Summary]:
    """Articles and reference summaries, as a run would leave them."""
    store.upsert_items(i for s in samples for i in s.items)
    summaries: dict[tuple[str, str], Summary] = {}
    for sample in samples:
        for lang, sentences in sample.reference.items():
            summary = Summary(
                story_id=sample.story.id,
                lang=lang,
                headline=sample.story.title,
                sentences=sentences,
                topics=sample.topics,
                importance=sample.importance,
                method="reference",
            )
            summaries[(sample.story.id, lang)] = summary
            save_summary(store, summary, member_key(sample.story), "reference")
    return summaries


def _record_taps(
    store: Store, taps: list[Tap], when: datetime, outlets: dict[str, str]
) -> None:
    """Taps as the bot stores them: the story, its topic for a mute, its outlet."""
    if not taps:
        return
    with store.begin() as conn:
        conn.execute(
            insert(db.feedback),
            [
                dict(
                    reader_id=t.reader,
                    story_id=t.story,
                    action=t.action,
                    topic=t.topic,
                    source=outlets.get(t.story),
                    created_at=when - timedelta(hours=12),
                )
                for t in taps
            ],
        )
