"""The LLM layer's parts on their own: JSON extraction, prices, breaker, errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest
from pydantic import BaseModel

from infra.config import ROOT
from infra.llm.breaker import CircuitBreaker
from infra.llm.errors import (
    BadOutput,
    LLMUnavailable,
    MalformedResponse,
    ModerationRefused,
    ProviderError,
    describe,
    is_disabling,
    is_transient,
    parse_retry_after,
)
from infra.llm.ledger import CallRecord, Ledger, budget_state
from infra.llm.prices import PriceTable, PriceTableError
from infra.llm.providers import Completion, Usage
from infra.llm.structured import extract_json, parse_completion, repair_messages


class Brief(BaseModel):
    headline: str
    facts: list[str]


def completion(text: str, finish: str = "stop") -> Completion:
    return Completion(text=text, finish_reason=finish, model="m")


# structured output ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"headline": "H", "facts": []}', id="bare"),
        pytest.param('\n\n  {"headline": "H", "facts": []}\n', id="blank-lines"),
        pytest.param('```json\n{"headline": "H", "facts": []}\n```', id="json-fence"),
        pytest.param('```\n{"headline": "H", "facts": []}\n```', id="plain-fence"),
        pytest.param(
            'Sure! Here it is:\n{"headline": "H", "facts": []}\nHope this helps.',
            id="prose-around",
        ),
        pytest.param(
            'Note {not json} then {"headline": "H", "facts": []}', id="brace-in-prose"
        ),
        pytest.param('\ufeff{"headline": "H", "facts": []}', id="bom"),
    ],
)
def test_json_is_found_however_it_is_wrapped(text: str) -> None:
    assert extract_json(text) == {"headline": "H", "facts": []}


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("no json here", id="prose"),
        pytest.param('{"headline": "H", "fac', id="cut"),
        pytest.param("[1, 2, 3]", id="array"),
    ],
)
def test_text_without_an_object_gives_none(text: str) -> None:
    assert extract_json(text) is None


@pytest.mark.parametrize(
    ("text", "finish", "kind"),
    [
        pytest.param("", "stop", "empty", id="empty"),
        pytest.param("   \n", "stop", "empty", id="whitespace"),
        pytest.param("", "length", "length", id="thought-away-its-budget"),
        pytest.param('{"headline": "H", "fa', "length", "length", id="cut"),
        pytest.param("I cannot help with that.", "stop", "not_json", id="prose"),
        pytest.param('{"headline": "H"}', "stop", "invalid", id="missing-field"),
        pytest.param('{"headline": 3, "facts": "x"}', "stop", "invalid", id="types"),
    ],
)
def test_unusable_replies_say_what_was_wrong(text: str, finish: str, kind: str) -> None:
    with pytest.raises(BadOutput) as caught:
        parse_completion(completion(text, finish), Brief, "deepseek")

    assert caught.value.kind == kind
    assert not is_transient(caught.value)


def test_content_filter_stop_is_a_refusal() -> None:
    with pytest.raises(ModerationRefused) as caught:
        parse_completion(completion("", "content_filter"), Brief, "openai")
    assert caught.value.provider == "openai"


def test_deepseek_capacity_stop_is_transient() -> None:
    with pytest.raises(MalformedResponse) as caught:
        parse_completion(
            completion('{"headline"', "insufficient_system_resource"), Brief, "deepseek"
        )
    assert is_transient(caught.value)


def test_repair_shows_the_model_its_reply_and_the_errors() -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    with pytest.raises(BadOutput) as caught:
        parse_completion(completion('{"headline": "H"}'), Brief, "qwen")

    repaired = repair_messages(messages, caught.value)

    assert repaired[:2] == messages
    assert repaired[2] == {"role": "assistant", "content": '{"headline": "H"}'}
    assert "facts" in repaired[3]["content"]


def test_repair_of_an_empty_reply_asks_again_without_an_empty_turn() -> None:
    messages = [{"role": "user", "content": "U"}]
    with pytest.raises(BadOutput) as caught:
        parse_completion(completion("", "length"), Brief, "qwen")

    repaired = repair_messages(messages, caught.value)

    assert [m["role"] for m in repaired] == ["user", "user"]


# errors ---------------------------------------------------------------------------


def _status_error(status: int, body: object, **headers: str) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/chat/completions")
    response = httpx.Response(status, headers=headers, request=request)
    cls = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        402: openai.APIStatusError,
        429: openai.RateLimitError,
    }.get(status, openai.InternalServerError)
    return cls("error", response=response, body=body)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        pytest.param(_status_error(429, {}), True, id="429"),
        pytest.param(_status_error(500, {}), True, id="500"),
        pytest.param(_status_error(503, {}), True, id="503-busy"),
        pytest.param(_status_error(400, {}), False, id="400"),
        pytest.param(_status_error(401, {}), False, id="401"),
        pytest.param(_status_error(402, {}), False, id="402"),
        pytest.param(
            _status_error(429, {"error": {"code": "insufficient_quota"}}),
            False,
            id="429-no-quota",
        ),
        pytest.param(asyncio.TimeoutError(), True, id="timeout"),
        pytest.param(ProviderError("qwen", "x", status=503), True, id="qwen-503"),
        pytest.param(ProviderError("qwen", "x", status=400), False, id="qwen-400"),
        pytest.param(MalformedResponse("deepseek", "blank"), True, id="blank-body"),
        pytest.param(ModerationRefused("deepseek"), False, id="refusal"),
        pytest.param(ValueError("bug"), False, id="not-ours"),
    ],
)
def test_only_transient_errors_are_retried(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_bad_keys_and_empty_balances_disable_a_provider() -> None:
    assert is_disabling(_status_error(401, {}))
    assert is_disabling(_status_error(402, {}))
    assert is_disabling(ProviderError("qwen", "bad key", status=401))
    assert not is_disabling(_status_error(503, {}))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Retry-After": "3"}, 3.0, id="seconds"),
        pytest.param({"retry-after": "0.25"}, 0.25, id="fraction"),
        pytest.param({"retry-after-ms": "1500"}, 1.5, id="milliseconds"),
        pytest.param({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0, id="date"),
        pytest.param({"Retry-After": "soon"}, None, id="nonsense"),
        pytest.param({}, None, id="absent"),
    ],
)
def test_retry_after_is_read_in_every_form(
    headers: dict[str, str], expected: float | None
) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(headers, now=now) == expected


def test_error_descriptions_carry_no_keys() -> None:
    exc = ProviderError("qwen", "bad header Authorization: Bearer sk-abcdef1234567890")
    assert "abcdef1234567890" not in describe(exc)


def test_unavailable_knows_when_every_provider_refused() -> None:
    refused = LLMUnavailable(
        {"deepseek": "refused", "qwen": "refused"}, refused_by=["deepseek", "qwen"]
    )
    mixed = LLMUnavailable(
        {"deepseek": "refused", "qwen": "503"}, refused_by=["deepseek"]
    )

    assert refused.all_refused
    assert not mixed.all_refused
    assert "qwen: 503" in str(mixed)


# prices ---------------------------------------------------------------------------

# Wednesday 2026-12-02: 02:30 UTC is 10:30 in Beijing (peak), 12:30 UTC is 20:30.
PEAK = datetime(2026, 12, 2, 2, 30, tzinfo=UTC)
OFF_PEAK = datetime(2026, 12, 2, 12, 30, tzinfo=UTC)
SATURDAY_MORNING = datetime(2026, 12, 5, 2, 30, tzinfo=UTC)
USAGE = Usage(
    prompt_tokens=3000,
    cache_hit_tokens=2000,
    cache_miss_tokens=1000,
    completion_tokens=500,
)


@pytest.fixture
def prices() -> PriceTable:
    return PriceTable.load(ROOT / "prices.toml")


@pytest.mark.parametrize(
    ("at", "tier", "expected"),
    [
        # 2000 * 0.006 + 1000 * 0.30 + 500 * 1.20, per million
        pytest.param(PEAK, "peak", 0.000912, id="weekday-peak"),
        # 2000 * 0.003 + 1000 * 0.15 + 500 * 0.60, per million
        pytest.param(OFF_PEAK, "off_peak", 0.000456, id="weekday-evening"),
        pytest.param(SATURDAY_MORNING, "off_peak", 0.000456, id="weekend"),
    ],
)
def test_deepseek_calls_are_priced_by_the_tier_in_force(
    prices: PriceTable, at: datetime, tier: str, expected: float
) -> None:
    cost, used = prices.cost("deepseek", "deepseek-flash", USAGE, at)

    assert used == tier
    assert cost == pytest.approx(expected)


def test_peak_windows_start_inclusive_and_end_exclusive(prices: PriceTable) -> None:
    nine = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)  # 09:00 Beijing
    noon = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)  # 12:00 Beijing

    assert prices.is_peak("deepseek", "deepseek-flash", nine)
    assert not prices.is_peak("deepseek", "deepseek-flash", nine - timedelta(seconds=1))
    assert not prices.is_peak("deepseek", "deepseek-flash", noon)


def test_an_older_entry_prices_calls_made_before_a_price_change(
    prices: PriceTable,
) -> None:
    september = datetime(2026, 9, 2, 12, 30, tzinfo=UTC)  # off-peak, before 2026-10-17

    old, _ = prices.cost("deepseek", "deepseek-v4-flash", USAGE, september)
    new, _ = prices.cost("deepseek", "deepseek-v4-flash", USAGE, OFF_PEAK)

    # 2000 * 0.007 + 1000 * 0.22 + 500 * 0.66 before; the Flash price (an alias) after.
    assert old == pytest.approx(0.000564)
    assert new == pytest.approx(0.000456)


def test_standard_rates_use_the_vendors_cache_split(prices: PriceTable) -> None:
    cost, tier = prices.cost("openai", "gpt-6-luna", USAGE, PEAK)

    assert tier == "standard"
    assert cost == pytest.approx((2000 * 0.01 + 1000 * 0.10 + 500 * 0.50) / 1e6)


def test_an_unlisted_model_is_unpriced_not_an_error(prices: PriceTable) -> None:
    assert prices.cost("openai", "gpt-99", USAGE, PEAK) == (0.0, "unpriced")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"prices": [{"provider": "x", "model": "m"}]}, id="no-rates"),
        pytest.param(
            {
                "prices": [
                    {
                        "provider": "x",
                        "model": "m",
                        "since": "yesterday",
                        "standard": {"input_cache_miss": 1, "output": 2},
                    }
                ]
            },
            id="since-not-a-date",
        ),
        pytest.param(
            {
                "prices": [
                    {
                        "provider": "x",
                        "model": "m",
                        "since": PEAK,
                        "schedule": "nope",
                        "peak": {"input_cache_miss": 1, "output": 2},
                        "off_peak": {"input_cache_miss": 1, "output": 2},
                    }
                ]
            },
            id="unknown-schedule",
        ),
        pytest.param(
            {"schedules": {"s": {"peak_hours": ["9-12"]}}, "prices": []},
            id="bad-window",
        ),
    ],
)
def test_a_malformed_price_table_is_rejected(data: dict[str, object]) -> None:
    with pytest.raises(PriceTableError):
        PriceTable.from_dict(data)


# breaker --------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_failures_in_a_row_and_lets_one_trial_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("deepseek", threshold=3, cooldown_s=60, clock=clock)

    breaker.failure()
    breaker.failure()
    breaker.success()  # a success resets the run of failures
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "open"
    assert not breaker.allow()

    clock.now += 60
    assert breaker.state == "half-open"
    assert breaker.allow()
    assert not breaker.allow()  # one trial at a time

    breaker.failure()
    assert breaker.state == "open"
    clock.now += 60
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"
    assert breaker.times_opened == 2


def test_breaker_trips_at_once_on_a_disabling_error() -> None:
    breaker = CircuitBreaker("openai", threshold=5, cooldown_s=60, clock=FakeClock())

    breaker.trip("401")

    assert breaker.state == "open"


# ledger ---------------------------------------------------------------------------


def record(ledger: Ledger, at: datetime, usd: float, **fields: object) -> None:
    values: dict[str, object] = dict(
        stage="summarize",
        provider="deepseek",
        model="deepseek-flash",
        outcome="ok",
        tier="off_peak",
    )
    values.update(fields)
    ledger.record(CallRecord(at=at, cost_usd=usd, **values))  # type: ignore[arg-type]


def test_budget_state_lines() -> None:
    assert budget_state(10, 50, 0.6, 1.0) == "ok"
    assert budget_state(30, 50, 0.6, 1.0) == "soft"
    assert budget_state(50, 50, 0.6, 1.0) == "hard"
    assert budget_state(0, 0, 0.6, 1.0) == "hard"


def test_cost_report_sums_the_month_and_projects_the_recent_daily_rate(store) -> None:
    ledger = Ledger(store)
    now = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)  # 10 days left in November
    record(ledger, datetime(2026, 10, 31, 23, 0, tzinfo=UTC), 5.0)  # last month
    record(ledger, datetime(2026, 11, 2, tzinfo=UTC), 1.0)
    for day in range(14, 21):  # $0.50 a day for the last 7 days
        record(
            ledger,
            datetime(2026, 11, day, 6, tzinfo=UTC),
            0.5,
            provider="qwen",
            model="qwen-plus",
            stage="factcheck",
            prompt_tokens=100,
            cache_hit_tokens=25,
        )
    record(ledger, datetime(2026, 11, 20, 7, tzinfo=UTC), 0.0, outcome="refused")

    report = ledger.cost_report(now, budget_usd=50, soft_fraction=0.6, hard_fraction=1)

    assert report["month"] == "2026-11"
    assert report["month_to_date_usd"] == pytest.approx(4.5)
    assert report["projected_month_usd"] == pytest.approx(4.5 + 0.5 * 10)
    assert report["calls"]["qwen"]["calls"] == 7
    assert report["calls"]["deepseek"]["refused"] == 1
    assert report["calls"]["deepseek"]["models"]["deepseek-flash"]["usd"] == 1.0
    assert report["stages"]["factcheck"]["usd"] == pytest.approx(3.5)
    assert report["prefix_cache_hit_rate"] == 0.25
    assert report["state"] == "ok"


def test_reader_spend_counts_only_that_reader_today(store) -> None:
    ledger = Ledger(store)
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    record(ledger, now - timedelta(hours=1), 0.01, reader_id="r1")
    record(ledger, now - timedelta(hours=2), 0.02, reader_id="r1")
    record(ledger, now - timedelta(days=1), 0.50, reader_id="r1")
    record(ledger, now, 0.40, reader_id="r2")

    usd, calls = ledger.reader_today("r1", now)

    assert calls == 2
    assert usd == pytest.approx(0.03)
