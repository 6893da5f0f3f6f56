"""The fact-check: the deterministic pass, the model pass and the policy (issue 5)."""

from __future__ import annotations

import pytest

from functions.factcheck import (
    Evidence,
    apply_verdicts,
    check_deterministic,
    check_summary,
    load_verdicts,
    save_verdicts,
    verdict_note,
)
from functions.models import KeyFact, Summary
from tests.editorial_fakes import (
    FakeChain,
    careful_checker,
    item,
    judges,
    trade_items,
)


def _problems(sentence: str, lang: str = "en", **kwargs: bool) -> list[str]:
    reasons, _ = check_deterministic(sentence, Evidence(trade_items(**kwargs)), lang)
    return reasons


def _summary(*sentences: str, lang: str = "en", provider: str = "deepseek") -> Summary:
    return Summary(
        story_id="trade",
        lang=lang,
        headline="China's exports rise",
        sentences=list(sentences),
        method="llm",
        provider=provider,
    )


# The deterministic pass: what a faithful summary may say ---------------------


@pytest.mark.parametrize(
    "sentence",
    [
        pytest.param("China's exports rose 8.3% in February.", id="percent"),
        pytest.param("Exports grew 8.3 per cent last month.", id="per-cent-spelled"),
        pytest.param(
            "The surplus was $92,400 million.", id="thousands-separator-scale"
        ),
        pytest.param("The surplus reached 92.4 billion dollars.", id="billion"),
        pytest.param("Growth of about 5% had been expected.", id="approximate"),
        pytest.param(
            "Customs published the data on March 2, 2026.", id="date-with-year"
        ),
        pytest.param("The figures came out on Monday.", id="weekday"),
        pytest.param(
            "Chinese Premier Li Qiang said trade policy would stay stable.",
            id="descriptor-before-name",
        ),
        pytest.param(
            "Exports to the United States fell 2.1%, the General Administration "
            "of Customs said.",
            id="organization-name",
        ),
        pytest.param(
            "Zhou Min said “demand from our neighbours held up better than we feared”.",
            id="verbatim-quote",
        ),
        pytest.param(
            "Zhou Min said demand “held up better…than we feared”.",
            id="quote-with-ellipsis",
        ),
    ],
)
def test_faithful_english_sentence_passes(sentence: str) -> None:
    assert _problems(sentence) == []


@pytest.mark.parametrize(
    "sentence",
    [
        pytest.param("2月出口同比增长百分之八点三。", id="chinese-percent"),
        pytest.param("贸易顺差为九百二十四亿美元。", id="chinese-numerals-yi"),
        pytest.param("贸易顺差达到924亿美元。", id="arabic-with-yi"),
        pytest.param("２月出口增长８．３％。", id="full-width-digits"),
        pytest.param("國務院總理李強表示將保持外貿政策穩定。", id="traditional-script"),
        pytest.param("海关总署周一公布了数据。", id="chinese-weekday"),
        pytest.param("中国2月对美国出口下降2.1%。", id="place-in-gazetteer"),
    ],
)
def test_faithful_chinese_sentence_passes(sentence: str) -> None:
    assert _problems(sentence, "zh") == []


def test_numbers_are_checked_across_languages() -> None:
    """An English summary's 92.4 billion is found as 924亿 in a Chinese article."""
    zh_only = Evidence([i for i in trade_items() if i.lang == "zh"])

    ok, _ = check_deterministic("The surplus was $92.4 billion.", zh_only, "en")
    wrong, _ = check_deterministic("The surplus was $94.2 billion.", zh_only, "en")

    assert ok == []
    assert wrong == ["number not in the articles: 94.2 billion"]


# The deterministic pass: typical model errors, each caught -------------------


@pytest.mark.parametrize(
    ("sentence", "lang", "expected"),
    [
        pytest.param(
            "China's exports rose 9.3% in February.",
            "en",
            "number not in the articles: 9.3%",
            id="number-changed",
        ),
        pytest.param(
            "The surplus widened to $92.4 million.",
            "en",
            "number not in the articles: 92.4 million",
            id="scale-changed",
        ),
        pytest.param(
            "Customs released the data on Tuesday.",
            "en",
            "date not in the articles: tuesday",
            id="weekday-changed",
        ),
        pytest.param(
            "Exports rose 8.3% in January.",
            "en",
            "date not in the articles: in january",
            id="month-changed",
        ),
        pytest.param(
            "Shipments to Latin America grew fastest.",
            "en",
            "name not in the articles: Latin America",
            id="place-changed",
        ),
        pytest.param(
            "Premier Li Keqiang said trade policy would stay stable.",
            "en",
            "name not in the articles: Premier Li Keqiang",
            id="former-office-holder-named",
        ),
        pytest.param(
            "Zhou Min, 54, said demand held up.",
            "en",
            "number not in the articles: 54",
            id="person-detail-age",
        ),
        pytest.param(
            "Zhou Min, who studied at Harvard, said demand held up.",
            "en",
            "name not in the articles: Harvard",
            id="person-detail-name",
        ),
        pytest.param(
            "Zhou Min said “demand from neighbours was better than feared”.",
            "en",
            "quoted words not in any article: “demand from neighbours was better "
            "than feared”",
            id="paraphrase-in-quotes",
        ),
        pytest.param(
            "Economists had not expected growth of about 5%.",
            "en",
            "negation differs from the article: Economists had expected growth of "
            "about 5%.",
            id="negation",
        ),
        pytest.param(
            "2月出口同比增长9.3%。",
            "zh",
            "number not in the articles: 9.3%",
            id="zh-number",
        ),
        pytest.param(
            "海关总署3月3日公布数据。",
            "zh",
            "date not in the articles: 3月3日",
            id="zh-date",
        ),
        pytest.param(
            "对欧盟出口增长最快。",
            "zh",
            "name not in the articles: 欧盟",
            id="zh-place",
        ),
        pytest.param(
            "国务院总理李克强表示将保持外贸政策稳定。",
            "zh",
            "name not in the articles: 国务院总理李克强",
            id="zh-former-office-holder",
        ),
    ],
)
def test_typical_model_error_is_caught(sentence: str, lang: str, expected: str) -> None:
    assert expected in _problems(sentence, lang)


def test_former_office_holder_presented_as_current_is_caught() -> None:
    articles = [
        item(
            "b1",
            "Former Premier Wen Jiabao attended the ceremony. Premier Li Qiang "
            "gave the main speech.",
        )
    ]
    evidence = Evidence(articles)

    current, _ = check_deterministic(
        "Premier Wen Jiabao attended the ceremony.", evidence, "en"
    )
    honest, _ = check_deterministic(
        "Former Premier Wen Jiabao attended the ceremony.", evidence, "en"
    )

    assert current == ["the articles call Wen Jiabao a former office-holder"]
    assert honest == []


def test_quote_in_another_language_cannot_be_verbatim() -> None:
    zh_only = Evidence([i for i in trade_items() if i.lang == "zh"])

    reasons, _ = check_deterministic(
        "Li Qiang promised “stable trade policy”.", zh_only, "en"
    )

    assert reasons == [
        "a quote cannot be verbatim across languages: “stable trade policy”"
    ]


# The model pass ----------------------------------------------------------------


async def test_checker_is_a_different_provider_from_the_writer() -> None:
    chain = FakeChain(providers=["deepseek", "qwen"], factcheck=careful_checker)

    report = await check_summary(
        chain,
        _summary(
            "China's exports rose 8.3% in February from a year earlier, "
            "customs data showed on Monday."
        ),
        trade_items(),
    )

    assert chain.calls[0]["avoid"] == ["deepseek"]
    assert report.checker == "qwen"
    assert [c.verdict for c in report.checks] == ["supported"]
    assert report.checks[0].evidence.startswith("China's exports rose 8.3%")


async def test_false_evidence_quote_counts_as_unsupported() -> None:
    chain = FakeChain(
        factcheck=judges(
            ("supported", "Exports rose a record 8.3% on strong demand", "A1")
        )
    )

    report = await check_summary(
        chain, _summary("Exports rose 8.3% in February."), trade_items()
    )

    check = report.checks[0]
    assert check.verdict == "unsupported"
    assert check.reasons == [
        "the checker's quote is not in any article: “Exports rose a record 8.3% on "
        "strong demand”"
    ]


@pytest.mark.parametrize(
    ("quote", "verdict"),
    [
        pytest.param("对东盟出口增长最快", "supported", id="short-sentence-whole"),
        pytest.param("出口", "unsupported", id="one-word"),
    ],
)
async def test_a_short_chinese_sentence_can_be_its_own_evidence(
    quote: str, verdict: str
) -> None:
    """Nine Chinese characters say as much as a dozen letters (found end to end:
    a faithful summary sentence of 11 characters could never be verified)."""
    chain = FakeChain(factcheck=judges(("supported", quote, "A1")))

    report = await check_summary(
        chain, _summary("对东盟出口增长最快。", lang="zh"), trade_items()
    )

    assert report.checks[0].verdict == verdict


async def test_real_quote_about_something_else_is_no_evidence() -> None:
    sentence = _summary("Shipments to Southeast Asia grew fastest.")
    related = FakeChain(
        factcheck=judges(
            ("supported", "Shipments to Southeast Asia grew fastest", "A1")
        )
    )
    unrelated = FakeChain(
        factcheck=judges(
            ("supported", "Economists had expected growth of about 5%", "A2")
        )
    )

    good = await check_summary(related, sentence, trade_items())
    bad = await check_summary(unrelated, sentence, trade_items())

    assert good.checks[0].verdict == "supported"
    assert bad.checks[0].verdict == "unsupported"
    assert bad.checks[0].reasons == [
        "the checker's quote has nothing in common with the sentence"
    ]


async def test_detail_no_article_states_is_dropped_by_the_model_pass() -> None:
    """No number or name to catch: only the model pass can see it."""
    detail = "Zhou Min, long a critic of export subsidies, said demand held up."
    chain = FakeChain(factcheck=careful_checker)

    report = await check_summary(chain, _summary(detail), trade_items())

    assert check_deterministic(detail, Evidence(trade_items()), "en")[0] == []
    assert report.checks[0].verdict == "unsupported"


async def test_contradicted_verdict_is_kept_as_such() -> None:
    chain = FakeChain(factcheck=judges(("contradicted", "", "")))

    report = await check_summary(
        chain, _summary("Shipments to Southeast Asia grew fastest."), trade_items()
    )

    assert report.checks[0].verdict == "contradicted"


async def test_without_a_checker_the_deterministic_pass_still_runs() -> None:
    chain = FakeChain(factcheck=None)

    report = await check_summary(
        chain,
        _summary("Exports rose 8.3% in February.", "Exports rose 9.9% in March."),
        trade_items(),
    )

    assert report.checker == ""
    assert report.model_error.startswith("LLMUnavailable")
    assert [c.verdict for c in report.checks] == ["supported", "unsupported"]


# Policy ------------------------------------------------------------------------


async def test_unsupported_sentences_are_removed_and_verdict_partly_verified() -> None:
    chain = FakeChain(factcheck=careful_checker)
    draft = _summary(
        "China's exports rose 8.3% in February from a year earlier, customs data "
        "showed on Monday.",
        "The trade surplus widened to $92.4 billion, the General Administration "
        "of Customs said.",
        "Premier Li Keqiang praised exporters.",
    )

    report = await check_summary(chain, draft, trade_items())
    checked = apply_verdicts(draft, report, min_kept=0.6)

    assert checked is not None
    assert checked.sentences == draft.sentences[:2]
    assert checked.verdict == "partly-verified"
    assert checked.checker == "qwen"


async def test_summary_that_loses_too_much_is_refused() -> None:
    chain = FakeChain(factcheck=careful_checker)
    draft = _summary(
        "China's exports rose 8.3% in February from a year earlier, customs data "
        "showed on Monday.",
        "Exports fell 3% in March.",
        "Premier Li Keqiang praised exporters.",
    )

    report = await check_summary(chain, draft, trade_items())

    assert apply_verdicts(draft, report, min_kept=0.6) is None


async def test_all_supported_by_both_passes_is_verified() -> None:
    chain = FakeChain(factcheck=careful_checker)
    draft = _summary(
        "China's exports rose 8.3% in February from a year earlier, customs data "
        "showed on Monday."
    )

    checked = apply_verdicts(
        draft, await check_summary(chain, draft, trade_items()), min_kept=0.6
    )

    assert checked is not None and checked.verdict == "verified"


async def test_corroborated_claims_bare_single_source_claims_attributed() -> None:
    draft = _summary(
        "China's exports rose 8.3% in February.",
        "Economists had expected growth of about 5%.",
    )
    draft.key_facts = [
        KeyFact(text="Exports rose 8.3% in February.", item_ids=["a1"]),
        KeyFact(text="Economists expected about 5% growth.", item_ids=["a2"]),
    ]

    report = await check_summary(None, draft, trade_items())
    checked = apply_verdicts(draft, report, min_kept=0.6)

    assert checked is not None
    assert checked.sentence_sources == [
        ["Harbor Wire", "Pacific Ledger", "东方日报"],
        ["Pacific Ledger"],
    ]
    assert checked.attributed_sentences() == [
        "China's exports rose 8.3% in February.",
        "Economists had expected growth of about 5%. (Pacific Ledger)",
    ]
    assert [(f.corroborated, f.sources) for f in checked.key_facts] == [
        (True, ["Harbor Wire", "Pacific Ledger", "东方日报"]),
        (False, ["Pacific Ledger"]),
    ]


async def test_wire_copies_are_not_independent_corroboration() -> None:
    items = [i for i in trade_items(with_copy=True) if i.id in ("a1", "a4")]
    draft = _summary("Shipments to Southeast Asia grew fastest.")

    report = await check_summary(None, draft, items)

    assert sorted(report.checks[0].item_ids) == ["a1", "a4"]
    assert len(report.checks[0].sources) == 1


async def test_verdicts_are_stored(store) -> None:
    chain = FakeChain(factcheck=careful_checker)
    draft = _summary(
        "China's exports rose 8.3% in February from a year earlier, customs data "
        "showed on Monday.",
        "Exports fell 3% in March.",
    )
    report = await check_summary(chain, draft, trade_items())

    save_verdicts(store, draft, report, member_key="k1", prompt_version="v", attempt=1)
    save_verdicts(store, draft, report, member_key="k1", prompt_version="v", attempt=1)

    rows = load_verdicts(store, "trade", "en")
    assert [
        (r["sentence_index"], r["verdict"], r["writer"], r["checker"]) for r in rows
    ] == [
        (1, "supported", "deepseek", "qwen"),
        (2, "unsupported", "deepseek", "qwen"),
    ]
    assert rows[0]["evidence"].startswith("China's exports rose 8.3%")
    assert "number not in the articles: 3%" in rows[1]["reasons"]


@pytest.mark.parametrize(
    ("method", "verdict", "lang", "expected"),
    [
        ("llm", "verified", "en", "Checked against the articles"),
        ("llm", "partly-verified", "zh", "已部分对照原文核实"),
        ("extractive-fallback", "failed", "en", "Excerpt from Harbor Wire"),
        ("llm", "unchecked", "en", "Not checked"),
    ],
)
def test_verdict_is_shown_in_the_reader_language(
    method, verdict, lang, expected
) -> None:
    summary = _summary("x.", lang=lang)
    summary.method, summary.verdict = method, verdict

    assert verdict_note(summary, "Harbor Wire") == expected
