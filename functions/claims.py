"""Checkable claims in a sentence, normalized so they can be found in articles.

A claim is a number (with percentages and amounts), a date, a quoted
phrase or a named entity. Both sides are normalized before comparison:
full-width digits, thousands separators, scale words ("1.2 billion" is
"1,200 million" is "12亿"), Chinese numerals ("三万五千", "百分之五点二"),
and Traditional to Simplified script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from functions.topics import fold

# Numbers ------------------------------------------------------------------

_SCALES: dict[str, float] = {
    "thousand": 1e3,
    "million": 1e6,
    "mn": 1e6,
    "billion": 1e9,
    "bn": 1e9,
    "trillion": 1e12,
    "tn": 1e12,
    "百": 1e2,
    "千": 1e3,
    "万": 1e4,
    "亿": 1e8,
    "万亿": 1e12,
}
_WORD_NUMBERS: dict[str, int] = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve "
        "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_WORD_NUMBERS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60})
_WORD_NUMBERS.update({"seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100})
_WORD_NUMBERS.update({"dozen": 12})
_UNITS = "one two three four five six seven eight nine".split()
# "one of the few", "one-year": too idiomatic to be a number claim.
del _WORD_NUMBERS["one"], _WORD_NUMBERS["zero"]

_ARABIC = re.compile(
    r"(?<![A-Za-z0-9.\-/])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?:\s?(?P<scale>万亿|亿|万|千)"
    r"|\s?(?P<scale_en>trillion|billion|million|thousand|bn|tn|mn)(?![a-z]))?"
    r"(?:\s?(?P<pct>%|percent\b|per cent\b|percentage points?\b|个百分点)"
    r"|(?:st|nd|rd|th)\b)?"
    r"(?![a-z0-9])"
)
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4}
_CN_DIGITS.update({"五": 5, "六": 6, "七": 7, "八": 8, "九": 9})
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_CHARS = "零〇一二两三四五六七八九十百千万亿"
_CN_NUMBER = re.compile(
    rf"(?P<pct>百分之)?(?P<num>[{_CN_CHARS}]+(?:点[零〇一二三四五六七八九]+)?)"
)
# Words made of numeral characters that are not numbers.
_CN_NOT_NUMBERS = ("万一", "一一", "千万", "万万", "亿万", "一百万分", "三三两两")
_WORD_NUMBER = re.compile(
    r"\b(?P<word>" + "|".join(sorted(_WORD_NUMBERS, key=len, reverse=True)) + r")"
    r"(?:[\s-](?P<unit>one|two|three|four|five|six|seven|eight|nine))?"
    r"(?:\s(?P<scale>thousand|million|billion|trillion))?"
    r"(?:\s(?P<pct>percent|per cent))?\b",
    re.IGNORECASE,
)
_APPROXIMATE = re.compile(
    r"(?:about|around|nearly|almost|roughly|some|approximately|more than|over|"
    r"less than|under|up to|at least|约|近|逾|超过|大约|将近|不到|超)\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Number:
    value: float
    kind: str  # percent | plain
    text: str
    precision: float


def _precision(digits: str, scale: float, approximate: bool) -> float:
    """Half a unit of the last written digit: "1.2 billion" is ±50 million."""
    if approximate:
        significant = digits.replace(".", "").rstrip("0") or "0"
        trailing = len(digits.replace(".", "")) - len(significant)
        decimals = len(digits.split(".")[1]) if "." in digits else 0
        return 0.5 * 10 ** (trailing - decimals) * scale
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return 0.5 * 10 ** (-decimals) * scale


def parse_chinese_numeral(text: str) -> float | None:
    """`三万五千` → 35000, `二〇二六` → 2026, `五点二` → 5.2; None if not a numeral."""
    integer, _, fraction = text.partition("点")
    if not integer or any(c not in _CN_CHARS for c in integer):
        return None
    if all(c in _CN_DIGITS for c in integer) and len(integer) > 1:
        value = float("".join(str(_CN_DIGITS[c]) for c in integer))
    else:
        total = section = digit = 0.0
        for char in integer:
            if char in _CN_DIGITS:
                digit = _CN_DIGITS[char]
            elif char in _CN_UNITS:
                section += (digit or 1) * _CN_UNITS[char]
                digit = 0
            elif char == "万":
                total += (section + digit) * 1e4
                section = digit = 0
            elif char == "亿":
                total = (total + section + digit) * 1e8
                section = digit = 0
        value = total + section + digit
    if fraction:
        if any(c not in _CN_DIGITS for c in fraction):
            return None
        value += float("0." + "".join(str(_CN_DIGITS[c]) for c in fraction))
    return value


def extract_numbers(text: str) -> list[Number]:
    """Every number in a text as a value and kind, whatever script wrote it."""
    text = fold(text)
    found: list[Number] = []
    for m in _ARABIC.finditer(text):
        digits = m.group("num").replace(",", "")
        scale = _SCALES.get(m.group("scale") or m.group("scale_en") or "", 1.0)
        approximate = bool(_APPROXIMATE.search(text[: m.start()]))
        found.append(
            Number(
                value=float(digits) * scale,
                kind="percent" if m.group("pct") else "plain",
                text=m.group(0).strip(),
                precision=_precision(digits, scale, approximate),
            )
        )
    for m in _CN_NUMBER.finditer(text):
        raw = m.group("num")
        if raw in _CN_NOT_NUMBERS or any(w in raw for w in _CN_NOT_NUMBERS[:2]):
            continue
        if len(raw) < 2 and not m.group("pct") and raw not in "十百千万亿":
            continue
        value = parse_chinese_numeral(raw)
        if value is None or value == 0:
            continue
        decimals = len(raw.partition("点")[2])
        found.append(
            Number(
                value=value,
                kind="percent" if m.group("pct") else "plain",
                text=m.group(0),
                precision=0.5 * 10 ** (-decimals),
            )
        )
    for m in _WORD_NUMBER.finditer(text):
        value = float(_WORD_NUMBERS[m.group("word").lower()])
        if m.group("unit"):
            value += _UNITS.index(m.group("unit").lower()) + 1
        value *= _SCALES.get((m.group("scale") or "").lower(), 1.0)
        found.append(
            Number(
                value=value,
                kind="percent" if m.group("pct") else "plain",
                text=m.group(0),
                precision=0.5,
            )
        )
    return found


def number_supported(claim: Number, candidates: list[Number]) -> bool:
    """True if an article number equals the claim, up to the claim's own rounding."""
    for other in candidates:
        if other.kind != claim.kind:
            continue
        if abs(claim.value - other.value) <= claim.precision + 1e-9 * abs(other.value):
            return True
    return False


# Dates ----------------------------------------------------------------------

_MONTHS = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_WEEKDAYS_EN = ("mon", "tues", "wednes", "thurs", "fri", "satur", "sun")
_WEEKDAYS_ZH = "一二三四五六日"
_MONTH = (
    r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|"
    r"aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_CN_SMALL = r"\d{1,2}|[一二三四五六七八九十]{1,3}"
_DATE_PATTERNS = [
    re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\b"),
    re.compile(
        rf"\b{_MONTH}\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y>\d{{4}})\b)?",
        re.IGNORECASE,
    ),
    re.compile(
        rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\b(?:,?\s+(?P<y>\d{{4}})\b)?",
        re.IGNORECASE,
    ),
    re.compile(rf"\b{_MONTH}\s*,?\s+(?P<y>\d{{4}})\b", re.IGNORECASE),
    re.compile(
        rf"\b(?:in|since|by|until|from|during|of|early|late|mid-?|end of)\s+{_MONTH}\b",
        re.IGNORECASE,
    ),
    re.compile(
        rf"(?:(?P<y>\d{{4}}|[〇零一二三四五六七八九]{{4}})年)?(?P<m>{_CN_SMALL})月"
        rf"(?:(?P<d>{_CN_SMALL})[日号])?"
    ),
    re.compile(r"(?P<y>\d{4}|[〇零一二三四五六七八九]{4})年"),
    re.compile(r"\b(?P<wd>mon|tues|wednes|thurs|fri|satur|sun)day\b", re.IGNORECASE),
    re.compile(r"(?:星期|周|礼拜)(?P<wdzh>[一二三四五六日天])"),
]


@dataclass(frozen=True)
class DateRef:
    year: int | None = None
    month: int | None = None
    day: int | None = None
    weekday: int | None = None
    text: str = ""

    def weekday_of(self, default_year: int | None) -> int | None:
        year = self.year or default_year
        if year and self.month and self.day:
            try:
                return date(year, self.month, self.day).weekday()
            except ValueError:
                return None
        return None


def _small_int(text: str | None) -> int | None:
    if not text:
        return None
    if text.isdigit():
        return int(text)
    value = parse_chinese_numeral(text)
    return None if value is None else int(value)


def extract_dates(text: str) -> tuple[list[DateRef], str]:
    """Dates in a text, and the text with them blanked out (so their digits
    are not read again as numbers)."""
    text = fold(text)
    spans: list[tuple[int, int]] = []
    found: list[DateRef] = []
    for pattern in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            if any(s <= m.start() < e or s < m.end() <= e for s, e in spans):
                continue
            groups = m.groupdict()
            month = groups.get("m") or groups.get("mon")
            ref = DateRef(
                year=_small_int(groups.get("y")),
                month=_MONTHS.get(month[:3])
                if month and not month[0].isdigit() and month[0] not in _CN_CHARS
                else _small_int(month),
                day=_small_int(groups.get("d")),
                weekday=_weekday(groups.get("wd"), groups.get("wdzh")),
                text=m.group(0),
            )
            if ref.month is not None and not 1 <= ref.month <= 12:
                continue
            if ref.day is not None and not 1 <= ref.day <= 31:
                continue
            spans.append((m.start(), m.end()))
            found.append(ref)
    blanked = text
    for start, end in spans:
        blanked = blanked[:start] + " " * (end - start) + blanked[end:]
    return found, blanked


def _weekday(english: str | None, chinese: str | None) -> int | None:
    if english:
        return _WEEKDAYS_EN.index(english.lower())
    if chinese:
        return 6 if chinese == "天" else _WEEKDAYS_ZH.index(chinese)
    return None


def date_supported(claim: DateRef, candidates: list[DateRef], years: set[int]) -> bool:
    """True if an article date agrees on every part the claim states.

    A year the article leaves out is taken from when the article was
    published; a weekday also matches a full date that falls on it.
    """
    default_year = max(years) if years else None
    for other in candidates:
        if claim.weekday is not None:
            if other.weekday == claim.weekday:
                return True
            if other.weekday_of(default_year) == claim.weekday:
                return True
            continue
        if claim.month is not None and other.month != claim.month:
            continue
        if claim.day is not None and other.day != claim.day:
            continue
        if claim.year is not None:
            if other.year is None and claim.year not in years:
                continue
            if other.year is not None and other.year != claim.year:
                continue
        if claim.month is None and claim.day is None and other.year is None:
            continue
        return True
    if claim.year and claim.month is None and claim.weekday is None:
        return claim.year in years
    return False


# Quotes -------------------------------------------------------------------

_QUOTES = [
    re.compile(r"“([^“”]{2,}?)”"),
    re.compile(r'"([^"]{2,}?)"'),
    re.compile(r"「([^「」]{2,}?)」"),
    re.compile(r"『([^『』]{2,}?)』"),
    re.compile(r"‘([^‘’]{2,}?\s[^‘’]*?)’"),
]
_ELLIPSIS = re.compile(r"\.\.\.|…+")


def extract_quotes(text: str) -> list[str]:
    """Phrases a sentence presents inside quotation marks."""
    quotes: list[str] = []
    for pattern in _QUOTES:
        quotes.extend(m.group(1).strip() for m in pattern.finditer(text))
    return [q for q in quotes if len(comparable(q)) >= 2]


def comparable(text: str) -> str:
    """Folded text with punctuation as single spaces: how quotes are compared."""
    return " ".join(re.sub(r"[\W_]+", " ", fold(text)).split())


def quote_in(quote: str, article: str) -> bool:
    """Verbatim (up to case, punctuation and script), an ellipsis allowing a gap."""
    haystack = f" {comparable(article)} "
    parts = [comparable(p) for p in _ELLIPSIS.split(quote)]
    return all(f" {p} " in haystack or _cjk_in(p, haystack) for p in parts if p)


def _cjk_in(part: str, haystack: str) -> bool:
    """Chinese has no spaces to bound a match, so a bare substring is enough."""
    if not re.search(r"[\u3400-\u9fff]", part):
        return False
    return part.replace(" ", "") in haystack.replace(" ", "")


# Named entities -------------------------------------------------------------

_CAP_TOKEN = re.compile(r"[A-Z][A-Za-z0-9'’.\-]*[A-Za-z0-9]|[A-Z]")
_CONNECTORS = frozenset("of the for and on de al bin van von".split())
_SENTENCE_STARTERS = frozenset(
    "the a an in on at for but and after before while when he she they it its "
    "this that these those there their his her officials analysts meanwhile also "
    "however as if by with from to under over during since some many most then "
    "both each one two three four five six seven eight nine ten".split()
)
_NOT_ENTITIES = frozenset(
    "january february march april may june july august september october "
    "november december monday tuesday wednesday thursday friday saturday sunday "
    "i".split()
)
# Words that may precede a name in a summary and need not be in the articles.
_DESCRIPTORS = frozenset(
    "chinese china's american us u.s. british japanese taiwanese beijing "
    "state-run state official".split()
)
# A country and its adjective name the same thing ("China", "Chinese").
_SAME_PLACE: dict[str, tuple[str, ...]] = {
    "china": ("chinese",),
    "chinese": ("china",),
    "us": ("u.s.", "united states", "american"),
    "u.s.": ("us", "united states", "american"),
    "united states": ("us", "u.s.", "american"),
    "american": ("us", "u.s.", "united states"),
    "japan": ("japanese",),
    "japanese": ("japan",),
    "canada": ("canadian",),
    "canadian": ("canada",),
    "indonesia": ("indonesian",),
    "indonesian": ("indonesia",),
    "europe": ("european", "european union", "eu"),
    "european union": ("eu", "european"),
    "eu": ("european union",),
    "taiwan": ("taiwanese",),
    "taiwanese": ("taiwan",),
    "russia": ("russian",),
    "russian": ("russia",),
    "india": ("indian",),
    "indian": ("india",),
}
OFFICES_EN = frozenset(
    "premier president minister chairman chairwoman governor mayor secretary "
    "spokesperson spokesman spokeswoman ambassador chancellor leader chief "
    "vice prime general director".split()
)
_FORMER_WORDS = frozenset("former ex ex- late outgoing retired".split())
FORMER_EN = re.compile(r"\b(?:former|ex-|late|then-?|retired|previous|outgoing)\s*$")
OFFICES_ZH = (
    "国家主席|国务院总理|副总理|总理|主席|外交部长|外长|部长|发言人|总统|首相|省长|"
    "市长|书记|大使|行长|主任|国务委员|委员长|总书记|署长|局长"
)
FORMER_ZH = re.compile(r"(?:前|原|已故|时任)\s*$")
_ZH_TITLE_NAME = re.compile(
    rf"(?P<office>副?(?:{OFFICES_ZH}))(?P<name>[\u4e00-\u9fff]{{2,3}})"
)
_ZH_BOOK_TITLE = re.compile(r"《([^》]+)》")
# Places and bodies often named in Chinese news, which carry no tell-tale suffix.
ZH_GAZETTEER = tuple(
    (
        "北京|上海|天津|重庆|广州|深圳|杭州|南京|武汉|成都|西安|苏州|厦门|青岛|大连|"
        "沈阳|哈尔滨|长春|郑州|长沙|合肥|福州|南昌|济南|昆明|贵阳|南宁|海口|兰州|"
        "西宁|银川|乌鲁木齐|拉萨|呼和浩特|石家庄|太原|宁波|无锡|东莞|佛山|珠海|"
        "香港|澳门|台湾|台北|高雄|新疆|西藏|内蒙古|广东|广西|福建|浙江|江苏|山东|"
        "河北|河南|湖北|湖南|江西|安徽|四川|云南|贵州|陕西|甘肃|青海|宁夏|海南|"
        "辽宁|吉林|黑龙江|山西|美国|日本|韩国|朝鲜|俄罗斯|印度|英国|法国|德国|"
        "欧盟|东盟|越南|菲律宾|澳大利亚|加拿大|巴西|新加坡|印度尼西亚|马来西亚|泰国|"
        "巴基斯坦|伊朗|以色列|乌克兰|沙特|南海|东海|台湾海峡|华盛顿|东京|莫斯科|"
        "布鲁塞尔|伦敦|巴黎|柏林|外交部|商务部|财政部|国防部|公安部|教育部|"
        "国家统计局|海关总署|中国人民银行|央行|国务院|全国人大|发改委|证监会|"
        "工信部|国家卫健委|生态环境部|最高人民法院|解放军|华为|比亚迪|阿里巴巴|"
        "腾讯|小米|宁德时代|中芯国际|碧桂园|恒大|万科"
    ).split("|")
)


@dataclass(frozen=True)
class Entity:
    text: str
    name: str  # the part without an office title
    office: str = ""
    former: bool = False  # the summary itself marks the person as former


def extract_entities(sentence: str) -> list[Entity]:
    """Names of people, places and bodies, in English and Chinese."""
    return _english_entities(sentence) + _chinese_entities(sentence)


def _english_entities(sentence: str) -> list[Entity]:
    tokens = [
        (m.start(), m.end(), _bare_word(m.group(0)))
        for m in re.finditer(r"[A-Za-z][A-Za-z0-9'’\-]*(?:\.[A-Za-z]+)*\.?", sentence)
    ]
    runs: list[list[tuple[int, int, str]]] = []
    current: list[tuple[int, int, str]] = []
    for i, token in enumerate(tokens):
        word = token[2]
        capital = bool(_CAP_TOKEN.fullmatch(word)) and word.lower() not in _NOT_ENTITIES
        joins = (
            word.lower() in _CONNECTORS
            and current
            and i + 1 < len(tokens)
            and _CAP_TOKEN.fullmatch(tokens[i + 1][2])
        )
        adjacent = not current or _only_space_between(sentence, current[-1], token)
        if (capital or joins) and adjacent:
            current.append(token)
            continue
        if current:
            runs.append(current)
        current = [token] if capital else []
    if current:
        runs.append(current)

    entities: list[Entity] = []
    # Where the sentence's first word starts (after any opening quote).
    opening = re.match(r"[\s\"'“‘(\[]*", sentence)
    first_start = opening.end() if opening else 0
    for run in runs:
        if run[0][0] == first_start:
            while run and run[0][2].lower() in _SENTENCE_STARTERS:
                run = run[1:]
            # One capitalized word opening a sentence is as often a common
            # word ("Forecasters") as a name: too unsure to check.
            if len(run) == 1 and run[0][0] == first_start:
                continue
        marked_former = False
        while run and run[0][2].lower() in _FORMER_WORDS:
            marked_former, run = True, run[1:]
        while run and run[-1][2].lower() in _CONNECTORS:
            run = run[:-1]
        if not run:
            continue
        words = [t[2] for t in run]
        offices = [w for w in words if w.lower() in OFFICES_EN]
        skip = OFFICES_EN | _DESCRIPTORS
        name_words = [w for w in words if w.lower() not in skip] or words
        text = sentence[run[0][0] : run[-1][1]].rstrip(".")
        text = text.removesuffix("'s").removesuffix("’s")
        before = sentence[max(0, run[0][0] - 25) : run[0][0]].lower()
        entities.append(
            Entity(
                text=text,
                name=" ".join(name_words),
                office=" ".join(offices),
                former=marked_former or bool(FORMER_EN.search(before)),
            )
        )
    return entities


def _bare_word(word: str) -> str:
    return word.rstrip(".").removesuffix("'s").removesuffix("’s")


def _only_space_between(
    text: str, left: tuple[int, int, str], right: tuple[int, int, str]
) -> bool:
    """Adjacent words of one name: a sentence's full stop ends the name."""
    head = text[: left[1]]
    if head.endswith(".") and not re.search(
        r"(?:\.[A-Za-z]+|\b[A-Z][a-z]{0,2})\.$", head
    ):
        return False
    return text[left[1] : right[0]].strip(" '’") == ""


def _chinese_entities(sentence: str) -> list[Entity]:
    text = fold(sentence)
    found: list[Entity] = []
    for m in _ZH_TITLE_NAME.finditer(text):
        before = text[max(0, m.start() - 4) : m.start()]
        found.append(
            Entity(
                text=m.group(0),
                name=m.group("name"),
                office=m.group("office"),
                former=bool(FORMER_ZH.search(before)),
            )
        )
    for m in _ZH_BOOK_TITLE.finditer(text):
        found.append(Entity(text=m.group(0), name=m.group(1)))
    for place in ZH_GAZETTEER:
        if place in text and not any(place in e.name for e in found):
            longer = [
                p for p in ZH_GAZETTEER if place in p and p != place and p in text
            ]
            if not longer:
                found.append(Entity(text=place, name=place))
    return found


def _find_all(needle: str, haystack: str) -> list[int]:
    return [m.start() for m in re.finditer(re.escape(needle), haystack)]


def _word_in(phrase: str, folded_article: str) -> bool:
    if re.search(r"[\u3400-\u9fff]", phrase):
        return phrase in folded_article
    # Latin letters and digits bound a name; Chinese characters around it do not.
    pattern = rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])"
    return re.search(pattern, folded_article) is not None


def entity_problem(entity: Entity, articles: list[str]) -> str | None:
    """Why an entity is not backed by the (same-language) articles, or None."""
    folded = [fold(a) for a in articles]
    if _is_chinese(entity.name):
        return _chinese_entity_problem(entity, folded)

    parts = re.split(r"\s+(?:and|&)\s+", entity.text)
    if len(parts) > 1 and _english_problem(entity.text, folded) is not None:
        for part in parts:
            problem = _english_problem(part, folded)
            if problem is not None:
                return problem
        return None
    problem = _english_problem(entity.text, folded)
    if problem is None:
        return _former_problem(entity, fold(entity.name), folded, FORMER_EN, 25)
    return problem


def _english_problem(text: str, folded: list[str]) -> str | None:
    """None if the name, or its end after descriptors the articles use, is there."""
    words = text.split()
    for start in range(len(words)):
        remainder = fold(" ".join(words[start:]))
        stripped = [fold(w) for w in words[:start]]
        if all(w in _CONNECTORS for w in remainder.split()):
            break
        forms = [remainder, *_SAME_PLACE.get(remainder, ())]
        if not any(_word_in(form, a) for form in forms for a in folded):
            continue
        if all(
            w in _DESCRIPTORS or any(_word_in(w, a) for a in folded) for w in stripped
        ):
            return None
    return f"name not in the articles: {text}"


def _chinese_entity_problem(entity: Entity, folded: list[str]) -> str | None:
    name = fold(entity.name)
    if entity.office:
        # "总理李强表示": the name may be two or three characters long.
        options = [name[:2], name] if len(name) == 3 else [name]
        hits = [o for o in options if any(o in a for a in folded)]
        if not hits:
            return f"name not in the articles: {entity.text}"
        return _former_problem(entity, hits[0], folded, FORMER_ZH, 6)
    if not any(name in a for a in folded):
        return f"name not in the articles: {entity.text}"
    return None


def _former_problem(
    entity: Entity, name: str, folded: list[str], former: re.Pattern[str], reach: int
) -> str | None:
    """The articles call this person former; the summary presents them as current."""
    if not entity.office or entity.former or not name:
        return None
    positions = [(a, p) for a in folded for p in _find_all(name, a)]
    if not positions:
        return None
    described_as_former = [
        bool(former.search(_before_office(a, p, reach))) for a, p in positions
    ]
    if all(described_as_former):
        return f"the articles call {entity.name} a former office-holder"
    return None


def _before_office(article: str, position: int, reach: int) -> str:
    """The words just before a name and the office title in front of it."""
    window = article[max(0, position - reach - 30) : position]
    window = re.sub(
        r"(?:\b(?:" + "|".join(OFFICES_EN) + r")\b\s*|副?(?:" + OFFICES_ZH + r"))+\s*$",
        "",
        window,
    )
    return window[-reach:] if reach else window


def _is_chinese(text: str) -> bool:
    return bool(re.search(r"[\u3400-\u9fff]", text))


# Negation -------------------------------------------------------------------

_NEGATION_EN = re.compile(
    r"\b(?:not|no|never|neither|nor|none|without|deny|denies|denied|refused?|"
    r"refuses)\b|n['’]t\b",
    re.IGNORECASE,
)
_NEGATION_ZH = re.compile(r"不|没有|没|未|无|非|否认|拒绝|并非|别")
# Words that contain a negation character but do not negate.
_NOT_NEGATION_ZH = re.compile(
    r"不断|不少|不仅|不过|不同|不久|不但|不管|不论|不得不|无论|无人机|未来|非洲|非常|"
    r"并不少|毫无疑问|差不多|不到|以及"
)


_CLAUSE_BREAK = re.compile(
    r"[,;:，；：、]|\b(?:but|while|whereas|although|though|yet)\b|但是|但|而且|而"
)


def split_clauses(text: str) -> list[str]:
    """Clauses of a text, split at commas, semicolons and contrasts."""
    return [c for c in _CLAUSE_BREAK.split(text) if c.strip()]


def strip_negation(text: str) -> str:
    """The text with its negation words removed (to compare what it is about)."""
    text = _NEGATION_EN.sub(" ", text)
    text = re.sub(r"\b(?:did|does|do)\b", " ", text, flags=re.IGNORECASE)
    folded = fold(text)
    kept = [(m.start(), m.end()) for m in _NOT_NEGATION_ZH.finditer(folded)]
    out: list[str] = []
    last = 0
    for m in _NEGATION_ZH.finditer(folded):
        if any(s <= m.start() < e for s, e in kept):
            continue
        out.append(folded[last : m.start()])
        last = m.end()
    out.append(folded[last:])
    return "".join(out)


def is_negated(text: str) -> bool:
    """Whether a sentence states something as not so."""
    if _NEGATION_EN.search(text):
        return True
    return bool(_NEGATION_ZH.search(_NOT_NEGATION_ZH.sub("", fold(text))))


@dataclass
class Claims:
    numbers: list[Number] = field(default_factory=list)
    dates: list[DateRef] = field(default_factory=list)
    quotes: list[str] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)

    @property
    def count(self) -> int:
        return (
            len(self.numbers) + len(self.dates) + len(self.quotes) + len(self.entities)
        )


def extract_claims(sentence: str) -> Claims:
    """Everything checkable in one sentence."""
    quotes = extract_quotes(sentence)
    unquoted = sentence
    for pattern in _QUOTES:
        unquoted = pattern.sub(" ", unquoted)
    dates, blanked = extract_dates(sentence)
    return Claims(
        numbers=extract_numbers(blanked),
        dates=dates,
        quotes=quotes,
        entities=extract_entities(unquoted),
    )
