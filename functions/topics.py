"""A small bilingual topic vocabulary and the lexical side of relevance.

Summaries label stories with these canonical English topics whatever
their language, so a reader's topics and feedback meet stories in either
language. Extractive summaries get their topics from the keywords here.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from functions.textnorm import t2s

# Canonical topic → keywords, English and Chinese, separated by "|".
_TOPIC_KEYWORDS_TEXT = {
    "economy": (
        "economy|economic|gdp|growth|inflation|consumer|retail|stimulus|"
        "deflation|pmi|factory|industrial|经济|国内生产总值|增长|通胀|消费|零售|刺激|工业"
    ),
    "trade": (
        "trade|tariff|export|import|surplus|customs|wto|supply chain|贸易|"
        "关税|出口|进口|顺差|海关|供应链"
    ),
    "technology": (
        "technology|tech|chip|semiconductor|ai|artificial|intelligence|"
        "huawei|smartphone|software|robot|科技|技术|芯片|半导体|人工智能|华为|手机|机器人"
    ),
    "finance": (
        "bank|central bank|yuan|renminbi|interest rate|bond|stock|"
        "market|investor|pboc|loan|debt|银行|央行|人民币|利率|债券|股市|投资者|贷款|债务"
    ),
    "property": (
        "property|real estate|housing|developer|home|mortgage|房地产|楼市|住房|"
        "开发商|房贷|房价"
    ),
    "politics": (
        "party|communist|congress|politburo|premier|president|official|"
        "corruption|anti-graft|plenum|cadre|政治|共产党|党|人大|政治局|总理|主席|官员|腐败|"
        "反腐"
    ),
    "diplomacy": (
        "diplomacy|diplomatic|foreign minister|summit|talks|ambassador|"
        "embassy|visit|relations|sanction|treaty|外交|外长|峰会|会谈|大使|使馆|访问|"
        "关系|制裁"
    ),
    "military": (
        "military|army|navy|pla|defense|defence|drill|missile|warship|"
        "aircraft carrier|exercise|troops|军事|军队|海军|解放军|国防|演习|"
        "导弹|军舰|航母"
    ),
    "taiwan": ("taiwan|taipei|cross-strait|台湾|台北|两岸"),
    "hong kong": ("hong kong|香港|特区"),
    "energy": (
        "energy|oil|gas|coal|solar|wind power|battery|electric vehicle|"
        "ev|nuclear|power grid|能源|石油|天然气|煤|光伏|太阳能|风电|电池|电动车|核电"
    ),
    "environment": (
        "environment|climate|emission|carbon|pollution|flood|drought|"
        "typhoon|earthquake|weather|环境|气候|排放|碳|污染|洪水|干旱|台风|地震"
    ),
    "health": (
        "health|hospital|disease|virus|vaccine|medical|drug|outbreak|健康|"
        "医院|疾病|病毒|疫苗|医疗|药"
    ),
    "society": (
        "population|birth|education|school|student|university|labor|"
        "labour|worker|employment|jobless|pension|人口|出生|教育|学校|学生|大学|劳动|"
        "工人|就业|失业|养老"
    ),
    "law": (
        "court|law|legal|trial|sentence|police|arrest|regulation|"
        "regulator|法院|法律|审判|判决|警方|逮捕|监管"
    ),
    "science": (
        "space|rocket|satellite|moon|mars|research|scientist|航天|火箭|卫星|"
        "月球|火星|研究|科学家"
    ),
    "transport": (
        "rail|railway|airline|flight|port|shipping|airport|铁路|高铁|航空|航班|"
        "港口|航运|机场"
    ),
}
TOPIC_KEYWORDS: dict[str, tuple[str, ...]] = {
    topic: tuple(text.split("|")) for topic, text in _TOPIC_KEYWORDS_TEXT.items()
}

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_HAN_RUN = re.compile(r"[\u3400-\u9fff]+")
_STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the "
    "to was were will with this said says after over new".split()
)


def fold(text: str) -> str:
    """Comparable form: NFKC (full width to half), lower case, simplified script."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    if _HAN_RUN.search(text):
        text = t2s().convert(text)
    return text


def _stem(word: str) -> str:
    for suffix in ("ies", "es", "s"):
        if len(word) > 4 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def tokens(text: str) -> set[str]:
    """Word stems for Latin script and character bigrams for Chinese."""
    text = re.sub(r"['’]s\b", "", fold(text))
    found = {_stem(w) for w in _WORD.findall(text) if w not in _STOPWORDS}
    for run in _HAN_RUN.findall(text):
        if len(run) == 1:
            found.add(run)
        found.update(run[i : i + 2] for i in range(len(run) - 1))
    return found


@lru_cache(maxsize=1)
def _keyword_tokens() -> dict[str, list[frozenset[str]]]:
    return {
        topic: [frozenset(tokens(k)) for k in (topic, *words)]
        for topic, words in TOPIC_KEYWORDS.items()
    }


def _hits(topic: str, bag: set[str]) -> int:
    return sum(1 for kw in _keyword_tokens()[topic] if kw and kw <= bag)


def infer_topics(text: str, limit: int = 3) -> list[str]:
    """The canonical topics whose keywords a text mentions most (two hits at least)."""
    bag = tokens(text)
    scored = [(_hits(t, bag), t) for t in TOPIC_KEYWORDS]
    ranked = sorted((s for s in scored if s[0] >= 2), key=lambda s: (-s[0], s[1]))
    return [t for _, t in ranked[:limit]]


def canonical_topic(label: str) -> str | None:
    """Map a free-text topic (`chips`, `台湾`, `Trade`) to a canonical one."""
    bag = tokens(label)
    if not bag:
        return None
    folded = fold(label).strip()
    if folded in TOPIC_KEYWORDS:
        return folded
    for topic, keywords in _keyword_tokens().items():
        if any(kw and kw == bag for kw in keywords):
            return topic
    return None


def topic_relevance(reader_topic: str, story_topics: list[str], bag: set[str]) -> float:
    """How well one free-text reader topic fits a story, from 0 to 1."""
    own = tokens(reader_topic)
    if not own:
        return 0.0
    lexical = len(own & bag) / len(own)
    canonical = canonical_topic(reader_topic)
    if canonical is None:
        return lexical
    labelled = 1.0 if canonical in {fold(t) for t in story_topics} else 0.0
    by_keywords = 0.7 * min(1.0, _hits(canonical, bag) / 2)
    return max(lexical, labelled, by_keywords)
