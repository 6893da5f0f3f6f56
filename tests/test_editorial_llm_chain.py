"""The editorial stage through the real LLM chain and the vendors' SDKs.

Runs once the LLM layer (issue 4) is merged: its fake vendor server on
127.0.0.1 answers the real openai and dashscope SDKs. Until then the
module is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from functions.summarize import summarize_story
from infra.config import ROOT, Settings
from tests.editorial_fakes import story, trade_items

llm_fakes = pytest.importorskip("tests.llm_fakes", reason="needs the LLM layer")

DRAFT = {
    "headline": "China's exports rise 8.3%",
    "sentences": [
        "China's exports rose 8.3% in February from a year earlier, customs data "
        "showed on Monday.",
        "Exports fell 12% in March.",
        "The trade surplus widened to $92.4 billion.",
    ],
    "key_facts": [{"text": "Exports rose 8.3%.", "articles": ["A1", "A2"]}],
    "topics": ["trade"],
    "importance": 0.8,
}
VERDICTS = {
    "judgements": [
        {
            "sentence": 1,
            "verdict": "supported",
            "quote": "China's exports rose 8.3% in February from a year earlier",
            "article": "A1",
        },
        {"sentence": 2, "verdict": "unsupported"},
        {
            "sentence": 3,
            "verdict": "supported",
            "quote": "The trade surplus widened to $92.4 billion",
            "article": "A1",
        },
    ]
}


@pytest.fixture
def vendors() -> Iterator[object]:
    server = llm_fakes.FakeLLMServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_deepseek_writes_qwen_checks_and_the_policy_applies(
    store, vendors
) -> None:
    from infra.llm import build_chain

    vendors.vendors["deepseek"].default_content = json.dumps(DRAFT)
    vendors.vendors["qwen"].default_content = json.dumps(VERDICTS)
    settings = Settings(
        **vendors.env(),
        DIGEST_LLM_ORDER="deepseek,qwen",
        DIGEST_PRICES=str(ROOT / "prices.toml"),
    )
    chain = build_chain(settings, store)
    items = trade_items()

    try:
        summary = await summarize_story(
            store, chain, story("t", *items), items, "en", settings=settings
        )
    finally:
        await chain.aclose()

    assert (summary.method, summary.provider, summary.checker) == (
        "llm",
        "deepseek",
        "qwen",
    )
    assert summary.sentences == [DRAFT["sentences"][0], DRAFT["sentences"][2]]
    assert summary.verdict == "partly-verified"
    assert len(vendors.vendors["qwen"].requests) == 1
    assert len(vendors.vendors["deepseek"].requests) == 1
