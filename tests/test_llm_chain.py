"""The chain against fakes of DeepSeek, DashScope and OpenAI on 127.0.0.1.

Every request here goes through the real openai and dashscope SDKs to the
fake vendors in `tests.llm_fakes`; nothing in the SDKs is patched.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import openai
import pytest
from pydantic import BaseModel
from sqlalchemy import select

from infra import db
from infra.config import ROOT, Settings
from infra.llm import LLMChain, LLMUnavailable, build_chain, build_providers
from infra.llm.errors import ProviderError
from infra.llm.ledger import CallRecord, Ledger
from infra.llm.prices import PriceTable
from infra.logs import run_context
from infra.store import Store
from tests.llm_fakes import KEYS, FakeLLMServer, Reply

# A Wednesday evening in Beijing: DeepSeek's off-peak tier.
OFF_PEAK = datetime(2026, 12, 2, 12, 30, tzinfo=UTC)
BRIEF = '{"headline": "Port reopens", "facts": ["Shipping resumed on Monday"]}'


class Brief(BaseModel):
    headline: str
    facts: list[str]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake(llm_server: FakeLLMServer) -> Iterator[FakeLLMServer]:
    llm_server.reset()
    for vendor in llm_server.vendors.values():
        vendor.default_content = BRIEF
    yield llm_server
    llm_server.reset()


class Harness:
    """Builds chains on the fakes, with recorded retry waits and a settable clock."""

    def __init__(self, fake: FakeLLMServer, store: Store) -> None:
        self.fake = fake
        self.store = store
        self.sleeps: list[float] = []
        self.clock = Clock()
        self.now = OFF_PEAK
        self.chains: list[LLMChain] = []

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            **self.fake.env(),
            "DIGEST_LLM_TIMEOUT_S": 0.3,
            "DIGEST_LLM_RETRIES": 2,
            "DIGEST_LLM_RETRY_WAIT_S": 0.01,
            "DIGEST_LLM_RETRY_MAX_WAIT_S": 0.02,
            "DIGEST_LLM_RETRY_AFTER_MAX_S": 5,
            "DIGEST_PRICES": str(ROOT / "prices.toml"),
        }
        values.update(overrides)
        return Settings(**values)

    def chain(self, **overrides: Any) -> LLMChain:
        settings = self.settings(**overrides)
        providers, skipped = build_providers(settings)

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        chain = LLMChain(
            providers,
            ledger=Ledger(self.store),
            prices=PriceTable.load(settings.digest_prices),
            settings=settings,
            skipped=skipped,
            sleep=sleep,
            clock=self.clock,
            now=lambda: self.now,
        )
        self.chains.append(chain)
        return chain

    def ledger_rows(self) -> list[Any]:
        with self.store.begin() as conn:
            return conn.execute(select(db.llm_calls).order_by(db.llm_calls.c.id)).all()


@pytest.fixture
async def harness(fake: FakeLLMServer, store: Store) -> AsyncIterator[Harness]:
    h = Harness(fake, store)
    yield h
    for chain in h.chains:
        await chain.aclose()


async def ask(chain: LLMChain, user: str = "Articles: port reopens", **kw: Any) -> Any:
    kw.setdefault("stage", "summarize")
    kw.setdefault("prompt_version", "v1")
    return await chain.complete_json(
        Brief, system="You summarize news for readers.", user=user, **kw
    )


def only(harness: Harness, *names: str, **overrides: Any) -> LLMChain:
    return harness.chain(DIGEST_LLM_ORDER=",".join(names), **overrides)


# success and usage ------------------------------------------------------------


async def test_deepseek_success_is_parsed_priced_and_recorded(harness: Harness) -> None:
    chain = only(harness, "deepseek")
    harness.fake["deepseek"].script(Reply(content=BRIEF, completion_tokens=40))

    result = await ask(chain, source="xinhua-en")

    assert result.value == Brief.model_validate_json(BRIEF)
    assert (result.provider, result.model, result.cached) == (
        "deepseek",
        "deepseek-flash",
        False,
    )
    (row,) = harness.ledger_rows()
    assert row.outcome == "ok"
    assert row.tier == "off_peak"
    assert row.source == "xinhua-en"
    assert row.completion_tokens == 40
    assert row.cache_hit_tokens + row.cache_miss_tokens == row.prompt_tokens > 0
    expected = (row.cache_miss_tokens * 0.15 + 40 * 0.60) / 1e6  # first call: no hits
    assert row.cost_usd == pytest.approx(expected)
    assert result.cost_usd == pytest.approx(expected)


async def test_deepseek_request_turns_thinking_off_and_asks_for_json(
    harness: Harness,
) -> None:
    chain = only(harness, "deepseek")

    await ask(chain, max_tokens=300)

    (body,) = harness.fake["deepseek"].requests
    assert body["thinking"] == {"type": "disabled"}
    assert body["response_format"] == {"type": "json_object"}
    assert body["max_tokens"] == 300
    assert body["model"] == "deepseek-flash"
    system, user = body["messages"]
    assert system["role"] == "system"
    assert system["content"].startswith("You summarize news for readers.")
    assert '"headline"' in system["content"]  # the schema, in the stable prefix
    assert user == {"role": "user", "content": "Articles: port reopens"}
    headers = harness.fake["deepseek"].headers[0]
    assert headers["authorization"] == f"Bearer {KEYS['deepseek']}"
    assert headers["x-stainless-retry-count"] == "0"


async def test_qwen_goes_through_the_native_generation_api(harness: Harness) -> None:
    chain = only(harness, "qwen")

    result = await ask(chain, max_tokens=200)

    assert result.provider == "qwen"
    (body,) = harness.fake["qwen"].requests
    assert body["model"] == "qwen-plus"
    assert body["input"]["messages"][1]["content"] == "Articles: port reopens"
    params = body["parameters"]
    assert params["enable_thinking"] is False
    assert params["result_format"] == "message"
    assert params["response_format"] == {"type": "json_object"}
    assert params["max_tokens"] == 200
    (row,) = harness.ledger_rows()
    assert row.tier == "standard"
    assert row.cost_usd == pytest.approx(
        (row.cache_miss_tokens * 0.40 + row.completion_tokens * 1.20) / 1e6
    )


async def test_openai_gets_reasoning_off_and_a_completion_token_limit(
    harness: Harness,
) -> None:
    chain = only(harness, "openai")

    await ask(chain, max_tokens=250)

    (body,) = harness.fake["openai"].requests
    assert body["reasoning_effort"] == "none"
    assert body["max_completion_tokens"] == 250
    assert "max_tokens" not in body
    assert "thinking" not in body


async def test_prefix_cache_hits_are_split_from_misses(harness: Harness) -> None:
    chain = only(harness, "deepseek")

    await ask(chain, user="Articles: first story")
    await ask(chain, user="Articles: second story")

    first, second = harness.ledger_rows()
    assert first.cache_hit_tokens == 0
    assert second.cache_hit_tokens > 0  # the shared system prompt and schema
    assert second.cache_miss_tokens < first.cache_miss_tokens
    assert chain.stats()["deepseek"]["cache_hit_tokens"] == second.cache_hit_tokens


# transient errors -------------------------------------------------------------


@pytest.mark.parametrize("vendor", ["deepseek", "qwen", "openai"])
async def test_429_waits_at_least_what_retry_after_asks(
    harness: Harness, vendor: str
) -> None:
    chain = only(harness, vendor)
    harness.fake[vendor].script(
        Reply.failure(vendor, 429, "Rate limit reached", **{"Retry-After": "0.4"})
    )

    result = await ask(chain)

    assert result.provider == vendor
    assert len(harness.fake[vendor].requests) == 2
    assert harness.sleeps and harness.sleeps[0] >= 0.4
    assert [r.outcome for r in harness.ledger_rows()] == ["transient", "ok"]
    assert chain.stats()[vendor]["retries"] == 1


async def test_a_retry_after_longer_than_the_limit_moves_on_at_once(
    harness: Harness,
) -> None:
    chain = only(harness, "deepseek", "qwen", DIGEST_LLM_RETRY_AFTER_MAX_S=2)
    harness.fake["deepseek"].script(
        Reply.failure("deepseek", 429, "slow down", **{"Retry-After": "120"})
    )

    result = await ask(chain)

    assert result.provider == "qwen"
    assert len(harness.fake["deepseek"].requests) == 1
    assert harness.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 503])
@pytest.mark.parametrize("vendor", ["deepseek", "qwen"])
async def test_server_errors_are_retried_with_jitter(
    harness: Harness, vendor: str, status: int
) -> None:
    chain = only(harness, vendor)
    harness.fake[vendor].script(
        Reply.failure(vendor, status, "Server is busy"),
        Reply.failure(vendor, status, "Server is busy"),
    )

    result = await ask(chain)

    assert result.provider == vendor
    assert len(harness.fake[vendor].requests) == 3
    assert len(harness.sleeps) == 2
    assert all(0 <= s <= 0.02 for s in harness.sleeps)


async def test_a_provider_that_stays_down_hands_over_with_its_own_error(
    harness: Harness,
) -> None:
    chain = only(harness, "deepseek", "qwen")
    harness.fake["deepseek"].respond = lambda body: Reply.failure(
        "deepseek", 503, "Server overloaded"
    )

    result = await ask(chain)

    assert result.provider == "qwen"
    assert len(harness.fake["deepseek"].requests) == 3  # one try and two retries
    stats = chain.stats()["deepseek"]
    assert (stats["failed"], stats["fallbacks"], stats["calls"]) == (1, 1, 3)
    assert chain.report()["stages"]["summarize"]["fallbacks"] == 1


async def test_callers_see_the_vendors_own_error_not_a_retry_wrapper(
    harness: Harness,
) -> None:
    chain = only(harness, "deepseek")
    harness.fake["deepseek"].respond = lambda body: Reply.failure(
        "deepseek", 503, "Server overloaded"
    )

    with pytest.raises(LLMUnavailable) as caught:
        await ask(chain)

    assert isinstance(caught.value.__cause__, openai.InternalServerError)
    assert "InternalServerError" in caught.value.reasons["deepseek"]
    assert "Server overloaded" in caught.value.reasons["deepseek"]


@pytest.mark.parametrize(
    ("vendor", "status"),
    [("deepseek", 400), ("deepseek", 402), ("qwen", 400), ("openai", 404)],
)
async def test_permanent_errors_are_not_retried(
    harness: Harness, vendor: str, status: int
) -> None:
    chain = harness.chain(
        DIGEST_LLM_ORDER=f"{vendor},openai" if vendor != "openai" else "openai,qwen"
    )
    harness.fake[vendor].script(Reply.failure(vendor, status, "no"))

    result = await ask(chain)

    assert result.provider != vendor
    assert len(harness.fake[vendor].requests) == 1
    assert harness.sleeps == []


async def test_a_hang_past_the_timeout_is_cut_and_retried(harness: Harness) -> None:
    chain = only(harness, "deepseek", DIGEST_LLM_TIMEOUT_S=0.2)
    harness.fake["deepseek"].script(Reply(content=BRIEF, delay=2.0))

    result = await ask(chain)

    assert result.provider == "deepseek"
    outcomes = [(r.outcome, r.error) for r in harness.ledger_rows()]
    assert outcomes[0] == ("transient", "TimeoutError")
    assert outcomes[1] == ("ok", None)


async def test_qwen_hang_is_cut_by_the_timeout_too(harness: Harness) -> None:
    chain = only(
        harness, "qwen", "openai", DIGEST_LLM_TIMEOUT_S=0.2, DIGEST_LLM_RETRIES=0
    )
    harness.fake["qwen"].script(Reply(content=BRIEF, delay=2.0))

    result = await ask(chain)

    assert result.provider == "openai"
    assert harness.ledger_rows()[0].outcome == "transient"


@pytest.mark.parametrize("vendor", ["deepseek", "qwen"])
async def test_a_body_of_keepalive_lines_only_is_transient(
    harness: Harness, vendor: str
) -> None:
    chain = only(harness, vendor)
    harness.fake[vendor].script(Reply(raw_body=b"\n\n\n\n"))

    result = await ask(chain)

    assert result.provider == vendor
    assert [r.outcome for r in harness.ledger_rows()] == ["transient", "ok"]


@pytest.mark.parametrize("vendor", ["deepseek", "qwen"])
async def test_keepalive_lines_before_the_answer_are_read_through(
    harness: Harness, vendor: str
) -> None:
    chain = only(harness, vendor)
    harness.fake[vendor].script(Reply(content=BRIEF, keepalive_lines=20))

    result = await ask(chain)

    assert result.value.headline == "Port reopens"
    assert len(harness.fake[vendor].requests) == 1


# moderation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"), [("deepseek", "qwen"), ("qwen", "deepseek")]
)
async def test_a_refusal_moves_only_that_item_to_the_next_provider(
    harness: Harness, first: str, second: str
) -> None:
    chain = only(harness, first, second)
    harness.fake[first].respond = lambda body: (
        Reply.refusal(first) if "story 7" in str(body) else Reply(content=BRIEF)
    )

    results = await asyncio.gather(
        *(ask(chain, user=f"Articles: story {i}", source=f"src-{i}") for i in range(10))
    )

    served = [r.provider for r in results]
    assert served.count(first) == 9
    assert served[7] == second
    refused_requests = [r for r in harness.fake[first].requests if "story 7" in str(r)]
    assert len(refused_requests) == 1  # never retried on the refusing vendor
    assert chain.stats()[first]["refused"] == 1
    assert chain.report()["refusals"] == [
        {"provider": first, "source": "src-7", "stage": "summarize", "count": 1}
    ]
    refused_rows = [r for r in harness.ledger_rows() if r.outcome == "refused"]
    assert [(r.provider, r.source) for r in refused_rows] == [(first, "src-7")]
    assert chain.breakers[first].state == "closed"


async def test_an_item_every_provider_refuses_is_said_to_be_refused(
    harness: Harness,
) -> None:
    chain = only(harness, "deepseek", "qwen")
    harness.fake["deepseek"].script(Reply.refusal("deepseek"))
    harness.fake["qwen"].script(Reply.refusal("qwen"))

    with pytest.raises(LLMUnavailable) as caught:
        await ask(chain)

    assert caught.value.all_refused
    assert caught.value.refused_by == ["deepseek", "qwen"]
    assert "Content Exists Risk" in caught.value.reasons["deepseek"]


async def test_openai_content_filter_stop_counts_as_a_refusal(harness: Harness) -> None:
    chain = only(harness, "openai", "deepseek")
    harness.fake["openai"].script(Reply(content="", finish_reason="content_filter"))

    result = await ask(chain)

    assert result.provider == "deepseek"
    assert chain.stats()["openai"]["refused"] == 1


# structured output ------------------------------------------------------------


async def test_invalid_json_gets_one_repair_with_the_errors(harness: Harness) -> None:
    chain = only(harness, "deepseek")
    harness.fake["deepseek"].script(
        Reply(content='Here you go: {"headline": "Port reopens"}'),
        Reply(content=BRIEF),
    )

    result = await ask(chain)

    assert result.value.facts == ["Shipping resumed on Monday"]
    first, repair = harness.fake["deepseek"].requests
    assert repair["messages"][:2] == first["messages"]
    assert repair["messages"][2]["role"] == "assistant"
    assert "facts" in repair["messages"][3]["content"]
    assert [r.outcome for r in harness.ledger_rows()] == ["bad_output", "ok"]
    assert chain.stats()["deepseek"]["repairs"] == 1


async def test_a_reply_that_is_not_json_twice_fails_over(harness: Harness) -> None:
    chain = only(harness, "qwen", "openai")
    harness.fake["qwen"].respond = lambda body: Reply(content="I'd rather talk prose.")

    result = await ask(chain)

    assert result.provider == "openai"
    assert len(harness.fake["qwen"].requests) == 2  # the ask and one repair
    assert chain.stats()["qwen"]["failed"] == 1


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(f"```json\n{BRIEF}\n```", id="fenced"),
        pytest.param(f"Sure. {BRIEF} Anything else?", id="prose"),
    ],
)
async def test_wrapped_json_needs_no_repair(harness: Harness, content: str) -> None:
    chain = only(harness, "deepseek")
    harness.fake["deepseek"].script(Reply(content=content))

    result = await ask(chain)

    assert result.value.headline == "Port reopens"
    assert len(harness.fake["deepseek"].requests) == 1


async def test_empty_content_is_asked_again(harness: Harness) -> None:
    chain = only(harness, "openai")
    harness.fake["openai"].script(Reply(content=""), Reply(content=BRIEF))

    result = await ask(chain)

    assert result.provider == "openai"
    assert [r.outcome for r in harness.ledger_rows()] == ["bad_output", "ok"]


async def test_a_length_cut_is_repaired_with_more_room(harness: Harness) -> None:
    chain = only(harness, "deepseek")
    harness.fake["deepseek"].script(
        Reply(content='{"headline": "Port re', finish_reason="length"),
        Reply(content=BRIEF),
    )

    await ask(chain, max_tokens=256)

    first, repair = harness.fake["deepseek"].requests
    assert (first["max_tokens"], repair["max_tokens"]) == (256, 512)


async def test_a_fallback_that_thinks_away_its_budget_is_seen_and_billed(
    harness: Harness,
) -> None:
    chain = only(harness, "openai", "qwen")
    thinking = Reply(
        content="", finish_reason="length", completion_tokens=0, reasoning_tokens=1024
    )
    harness.fake["openai"].script(thinking, thinking)

    result = await ask(chain)

    assert result.provider == "qwen"
    rows = [r for r in harness.ledger_rows() if r.provider == "openai"]
    assert [r.reasoning_tokens for r in rows] == [1024, 1024]
    assert all(r.cost_usd > 0 and r.outcome == "bad_output" for r in rows)
    assert chain.stats()["openai"]["success_rate"] == 0.0


# order, configuration ---------------------------------------------------------


async def test_the_order_is_configuration(harness: Harness) -> None:
    chain = harness.chain(DIGEST_LLM_ORDER="openai, qwen, deepseek")

    result = await ask(chain)

    assert chain.providers == ["openai", "qwen", "deepseek"]
    assert result.provider == "openai"


async def test_avoided_providers_are_tried_last(harness: Harness) -> None:
    chain = harness.chain()

    checked = await ask(chain, stage="factcheck", avoid=["deepseek"])
    harness.fake["qwen"].respond = lambda body: Reply(status=503, error={"code": "x"})
    harness.fake["openai"].respond = lambda body: Reply.failure("openai", 503, "down")
    fallback = await ask(chain, user="other", stage="factcheck", avoid=["deepseek"])

    assert checked.provider == "qwen"
    assert fallback.provider == "deepseek"


async def test_providers_without_keys_are_skipped_and_said_so_once(
    harness: Harness, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        DEEPSEEK_API_KEY=KEYS["deepseek"],
        DEEPSEEK_BASE_URL=harness.fake.base_url("deepseek"),
        DIGEST_LLM_ORDER="deepseek,qwen,openai,mistral",
    )
    with caplog.at_level(logging.INFO, logger="infra.llm"):
        chain = build_chain(settings, store)
    harness.chains.append(chain)

    assert chain.providers == ["deepseek"]
    assert set(chain.skipped) == {"qwen", "openai", "mistral"}
    skipped_lines = [
        r.getMessage() for r in caplog.records if "skipped" in r.getMessage()
    ]
    assert len(skipped_lines) == 3
    assert any("DASHSCOPE_API_KEY" in line for line in skipped_lines)


async def test_no_provider_at_all_is_a_clear_signal(store: Store) -> None:
    chain = build_chain(Settings(), store)

    with pytest.raises(LLMUnavailable) as caught:
        await ask(chain)

    assert chain.providers == []
    assert "no provider configured" in str(caught.value)
    assert "DEEPSEEK_API_KEY" in caught.value.reasons["deepseek"]


async def test_a_wrong_key_opens_the_breaker_at_once(harness: Harness) -> None:
    chain = harness.chain(DIGEST_LLM_ORDER="deepseek,qwen", DEEPSEEK_API_KEY="sk-wrong")

    first = await ask(chain, user="one")
    second = await ask(chain, user="two")

    assert (first.provider, second.provider) == ("qwen", "qwen")
    assert len(harness.fake["deepseek"].requests) == 1
    assert chain.breakers["deepseek"].state == "open"


# breaker ----------------------------------------------------------------------


async def test_the_breaker_stops_calling_a_failing_provider_for_a_while(
    harness: Harness,
) -> None:
    chain = only(
        harness,
        "deepseek",
        "qwen",
        DIGEST_LLM_RETRIES=0,
        DIGEST_LLM_BREAKER_FAILURES=2,
        DIGEST_LLM_BREAKER_COOLDOWN_S=30,
    )
    harness.fake["deepseek"].respond = lambda body: Reply.failure(
        "deepseek", 503, "busy"
    )

    for i in range(4):
        assert (await ask(chain, user=f"item {i}")).provider == "qwen"
    assert len(harness.fake["deepseek"].requests) == 2
    assert chain.stats()["deepseek"]["breaker"] == "open"

    harness.clock.now += 30
    harness.fake["deepseek"].respond = None  # the outage is over
    result = await ask(chain, user="after the cooldown")

    assert result.provider == "deepseek"
    assert chain.breakers["deepseek"].state == "closed"


# cache ------------------------------------------------------------------------


async def test_an_unchanged_input_is_never_sent_twice(harness: Harness) -> None:
    chain = harness.chain()

    first = await ask(chain)
    again = await ask(chain)
    rerun = await ask(harness.chain())  # a new run on the same store

    assert not first.cached
    assert again.cached and rerun.cached
    assert again.value == first.value
    assert (rerun.provider, rerun.cost_usd) == ("deepseek", 0.0)
    assert len(harness.fake["deepseek"].requests) == 1
    assert chain.report()["stages"]["summarize"]["cached"] == 1


async def test_a_new_prompt_version_or_wording_is_a_new_call(harness: Harness) -> None:
    chain = harness.chain()

    await ask(chain)
    await ask(chain, prompt_version="v2")
    await chain.complete_json(
        Brief,
        stage="summarize",
        system="Other words.",
        user="Articles: port reopens",
        prompt_version="v1",
    )

    assert len(harness.fake["deepseek"].requests) == 3


async def test_a_rerun_after_a_refusal_makes_zero_calls(harness: Harness) -> None:
    harness.fake["deepseek"].script(Reply.refusal("deepseek"))
    first = await ask(harness.chain())

    rerun = await ask(harness.chain())

    assert first.provider == rerun.provider == "qwen"
    assert rerun.cached
    assert len(harness.fake["deepseek"].requests) == 1
    assert len(harness.fake["qwen"].requests) == 1


# money ------------------------------------------------------------------------


def spend(store: Store, usd: float, at: datetime = OFF_PEAK, **fields: Any) -> None:
    Ledger(store).record(
        CallRecord(
            at=at,
            stage="summarize",
            provider="deepseek",
            model="deepseek-flash",
            outcome="ok",
            tier="off_peak",
            cost_usd=usd,
            **fields,
        )
    )


async def test_past_the_soft_line_optional_calls_stop_and_models_get_cheaper(
    harness: Harness,
) -> None:
    spend(harness.store, 31.0)  # 62% of $50
    chain = only(harness, "qwen")

    with pytest.raises(LLMUnavailable, match="soft line"):
        await ask(chain, optional=True)
    result = await ask(chain)

    assert result.model == "qwen-flash"
    assert [b["model"] for b in harness.fake["qwen"].requests] == ["qwen-flash"]
    assert chain.report()["budget"]["state"] == "soft"


async def test_under_the_soft_line_optional_calls_run(harness: Harness) -> None:
    spend(harness.store, 29.0)
    chain = only(harness, "qwen")

    result = await ask(chain, optional=True)

    assert result.model == "qwen-plus"


async def test_past_the_hard_line_no_call_is_made(harness: Harness) -> None:
    chain = harness.chain()
    cached = await ask(chain, user="known story")
    spend(harness.store, 50.0)
    chain = harness.chain()  # a later run reads the month's spend afresh

    with pytest.raises(LLMUnavailable, match="hard line") as caught:
        await ask(chain, user="new story")
    again = await ask(chain, user="known story")

    assert "DIGEST_BUDGET_USD" in caught.value.reasons["budget"]
    assert again.cached and again.value == cached.value  # the cache costs nothing
    assert len(harness.fake["deepseek"].requests) == 1


async def test_the_month_spend_includes_this_runs_calls(harness: Harness) -> None:
    spend(harness.store, 29.99)
    chain = only(harness, "deepseek", DIGEST_BUDGET_REFRESH_S=3600)
    harness.fake["deepseek"].script(Reply(content=BRIEF, completion_tokens=20_000_000))

    await ask(chain, user="an expensive answer")  # 20M output tokens: $12

    with pytest.raises(LLMUnavailable, match="soft line"):
        await ask(chain, user="optional extra", optional=True)


async def test_a_reader_stops_at_the_daily_cap(harness: Harness) -> None:
    chain = harness.chain(DIGEST_READER_DAILY_CALLS=2)

    await ask(chain, user="q1", reader_id="r1", stage="ask")
    await ask(chain, user="q2", reader_id="r1", stage="ask")
    with pytest.raises(LLMUnavailable, match="reader daily cap"):
        await ask(chain, user="q3", reader_id="r1", stage="ask")
    other = await ask(chain, user="q3", reader_id="r2", stage="ask")
    pipeline = await ask(chain, user="q4")

    assert not other.cached and not pipeline.cached
    assert len(harness.fake["deepseek"].requests) == 4


async def test_a_reader_cap_in_dollars(harness: Harness) -> None:
    spend(harness.store, 0.06, reader_id="r1")
    chain = harness.chain(DIGEST_READER_DAILY_USD=0.05)

    with pytest.raises(LLMUnavailable, match="reader daily cap"):
        await ask(chain, reader_id="r1")


async def test_peak_hours_are_priced_double(harness: Harness) -> None:
    harness.now = datetime(2026, 12, 2, 2, 30, tzinfo=UTC)  # 10:30 in Beijing
    chain = only(harness, "deepseek")
    harness.fake["deepseek"].script(Reply(content=BRIEF, completion_tokens=1000))

    await ask(chain)

    (row,) = harness.ledger_rows()
    assert row.tier == "peak"
    assert row.cost_usd == pytest.approx(
        (row.cache_miss_tokens * 0.30 + 1000 * 1.20) / 1e6
    )


async def test_ledger_rows_carry_the_run_and_the_prompt_version(
    harness: Harness,
) -> None:
    chain = harness.chain()

    with run_context(run_id="run-42", stage="summarize"):
        await ask(chain, prompt_version="v3", reader_id="r9", stage="ask")

    (row,) = harness.ledger_rows()
    assert (row.run_id, row.prompt_version, row.reader_id, row.stage) == (
        "run-42",
        "v3",
        "r9",
        "ask",
    )
    assert row.latency_ms >= 0


# deadlines, stats -------------------------------------------------------------


async def test_a_stage_past_its_deadline_makes_no_more_calls(harness: Harness) -> None:
    chain = harness.chain(DIGEST_LLM_STAGE_DEADLINE_S=60)

    await ask(chain, user="early")
    harness.clock.now += 61
    with pytest.raises(LLMUnavailable, match="deadline"):
        await ask(chain, user="late")
    other_stage = await ask(chain, user="late", stage="factcheck")

    assert other_stage.provider == "deepseek"


async def test_stats_and_report_say_who_served_what(harness: Harness) -> None:
    chain = harness.chain()
    harness.fake["deepseek"].script(Reply.refusal("deepseek"))

    await ask(chain, user="a", source="rfi-zh")
    await ask(chain, user="b")
    await ask(chain, user="b")

    stats = chain.stats()
    assert set(stats) == {"deepseek", "qwen", "openai"}
    for entry in stats.values():
        assert {
            "calls",
            "ok",
            "failed",
            "refused",
            "fallbacks",
            "cost_usd",
            "tokens",
        } <= set(entry)
    assert (stats["deepseek"]["ok"], stats["deepseek"]["refused"]) == (1, 1)
    assert stats["qwen"]["ok"] == 1
    assert stats["deepseek"]["success_rate"] == 0.5
    report = chain.report()
    assert report["stages"]["summarize"] == {
        "served": {"qwen": 1, "deepseek": 1},
        "cached": 1,
        "fallbacks": 1,
        "unavailable": 0,
    }
    assert report["cache_hits"] == 1


async def test_dashscope_errors_keep_their_code(harness: Harness) -> None:
    chain = only(harness, "qwen")
    harness.fake["qwen"].script(
        Reply(
            status=400, error={"code": "InvalidParameter", "message": "bad max_tokens"}
        )
    )

    with pytest.raises(LLMUnavailable) as caught:
        await ask(chain)

    assert isinstance(caught.value.__cause__, ProviderError)
    assert caught.value.__cause__.code == "InvalidParameter"
    assert "bad max_tokens" in caught.value.reasons["qwen"]


# logs ---------------------------------------------------------------------------


async def test_no_key_reaches_the_logs_even_at_debug(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    chain = harness.chain(DIGEST_LLM_RETRIES=0)
    harness.fake["deepseek"].script(
        Reply.failure("deepseek", 401, "Authentication Fails")
    )
    harness.fake["qwen"].script(Reply.failure("qwen", 500, "oops"))

    with caplog.at_level(logging.DEBUG):
        result = await ask(chain)
        chain.log_summary()

    assert result.provider == "openai"
    text = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {getattr(r, 'fields', '')}"
        for r in caplog.records
    )
    for key in KEYS.values():
        assert key not in text


async def test_the_dashscope_sdk_traceback_per_failure_is_dropped(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    chain = only(
        harness, "qwen", "openai", DIGEST_LLM_TIMEOUT_S=0.2, DIGEST_LLM_RETRIES=0
    )
    harness.fake["qwen"].script(Reply(content=BRIEF, delay=1.0))

    with caplog.at_level(logging.DEBUG):
        await ask(chain)

    assert not [r for r in caplog.records if r.name == "dashscope" and r.exc_info]
    assert any("failed on qwen" in r.getMessage() for r in caplog.records)


async def test_a_provider_that_rarely_answers_is_flagged_in_the_summary(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    chain = only(harness, "deepseek", "qwen", DIGEST_LLM_RETRIES=0)
    harness.fake["deepseek"].respond = lambda body: Reply(content="not json at all")

    for i in range(3):
        await ask(chain, user=f"item {i}")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="infra.llm"):
        chain.log_summary()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "llm provider deepseek answered only 0 of 3 items (3 failed, 0 refused)"
    ]
    totals = [r for r in caplog.records if r.getMessage().startswith("llm totals")]
    assert "3 served" in totals[0].getMessage()


# concurrency, robustness -------------------------------------------------------


async def test_the_same_input_asked_twice_at_once_is_sent_once(
    harness: Harness,
) -> None:
    chain = harness.chain()
    harness.fake["deepseek"].script(Reply(content=BRIEF, delay=0.1))

    first, second = await asyncio.gather(ask(chain), ask(chain))

    assert len(harness.fake["deepseek"].requests) == 1
    assert sorted([first.cached, second.cached]) == [False, True]
    assert first.value == second.value


async def test_a_failure_shared_by_concurrent_askers_reaches_both(
    harness: Harness,
) -> None:
    chain = only(harness, "deepseek", DIGEST_LLM_RETRIES=0)
    harness.fake["deepseek"].script(Reply.failure("deepseek", 400, "bad", delay=0.1))

    outcomes = await asyncio.gather(ask(chain), ask(chain), return_exceptions=True)

    assert all(isinstance(o, LLMUnavailable) for o in outcomes)
    assert len(harness.fake["deepseek"].requests) == 1


async def test_begin_stage_restarts_the_stage_clock(harness: Harness) -> None:
    chain = harness.chain(DIGEST_LLM_STAGE_DEADLINE_S=60)
    await ask(chain, user="yesterday")
    harness.clock.now += 3600

    chain.begin_stage("summarize")
    result = await ask(chain, user="today")

    assert result.provider == "deepseek"


async def test_a_lost_ledger_row_does_not_lose_the_answer(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    chain = harness.chain(DIGEST_BUDGET_REFRESH_S=3600)
    await ask(chain, user="the budget is read once")
    db.llm_calls.drop(harness.store.engine)  # the ledger table goes away mid-run

    result = await ask(chain)

    assert result.value.headline == "Port reopens"
    assert any("ledger row lost" in r.getMessage() for r in caplog.records)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("vendor", "setting", "path"),
    [
        ("deepseek", "DEEPSEEK_BASE_URL", ""),
        ("qwen", "DASHSCOPE_HTTP_BASE_URL", "/api/v1"),
    ],
)
async def test_a_refused_connection_is_retried_then_handed_over(
    harness: Harness, vendor: str, setting: str, path: str
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}{path}"
    chain = harness.chain(DIGEST_LLM_ORDER=f"{vendor},openai", **{setting: url})

    result = await ask(chain)

    assert result.provider == "openai"
    rows = [r for r in harness.ledger_rows() if r.provider == vendor]
    assert [r.outcome for r in rows] == ["transient"] * 3
    assert len(harness.sleeps) == 2
