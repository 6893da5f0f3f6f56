"""The chain: one structured call, tried on each configured provider in turn.

For one item the chain looks in the cache, checks the budget, then asks
the providers in order. On each provider a call is retried with jitter
for transient errors only, repaired once when the reply is not the JSON
asked for, and abandoned for the next provider otherwise. A moderation
refusal moves only that item to the next provider. When no provider
answers, `LLMUnavailable` tells the caller to use its extractive path.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import aiohttp
import openai
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from infra.config import Settings
from infra.llm.breaker import CircuitBreaker
from infra.llm.budget import BudgetGuard
from infra.llm.errors import (
    BadOutput,
    LLMError,
    LLMUnavailable,
    ModerationRefused,
    describe,
    is_disabling,
    is_transient,
    retry_after_seconds,
)
from infra.llm.ledger import CallRecord, Ledger, cache_key
from infra.llm.prices import PriceTable
from infra.llm.providers import Completion, Message, Provider
from infra.llm.structured import parse_completion, repair_messages, schema_instruction
from infra.logs import current_context

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

# A provider answering fewer than half of at least this many items is flagged.
_WATCH_MIN_ITEMS = 3
_WATCH_SUCCESS_RATE = 0.5

# What a provider can fail with; anything else is a bug and propagates.
_FAILURES = (LLMError, openai.OpenAIError, aiohttp.ClientError, TimeoutError)


@dataclass
class LLMResult(Generic[T]):
    value: T
    provider: str
    model: str
    cached: bool
    prompt_version: str
    cost_usd: float


@dataclass
class _ProviderStats:
    calls: int = 0  # requests sent
    ok: int = 0  # items served
    failed: int = 0  # items given up on after retries and one repair
    refused: int = 0  # items its content filter declined
    fallbacks: int = 0  # items passed on to the next provider
    retries: int = 0
    repairs: int = 0
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    cache_hit_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        tried = self.ok + self.failed + self.refused
        return {
            "calls": self.calls,
            "ok": self.ok,
            "failed": self.failed,
            "refused": self.refused,
            "fallbacks": self.fallbacks,
            "retries": self.retries,
            "repairs": self.repairs,
            "cost_usd": round(self.cost_usd, 6),
            "tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens": self.prompt_tokens,
            "cache_hit_tokens": self.cache_hit_tokens,
            "completion_tokens": self.completion_tokens,
            "success_rate": round(self.ok / tried, 4) if tried else None,
        }


@dataclass
class _StageStats:
    served: Counter[str] = field(default_factory=Counter)
    cached: int = 0
    fallbacks: int = 0
    unavailable: int = 0


@dataclass
class _Request:
    """One item's question, as asked of every provider in `order`."""

    stage: str
    messages: list[Message]
    content_hash: str
    prompt_version: str
    order: list[str]
    source: str | None
    reader_id: str | None
    optional: bool
    max_tokens: int


@dataclass
class _Call:
    """One item's request, as the ledger records it."""

    stage: str
    provider: str
    model: str
    prompt_version: str
    source: str | None
    reader_id: str | None
    run_id: str | None
    deadline: float
    cost_usd: float = 0.0


class LLMChain:
    """Every model call of the product goes through here."""

    def __init__(
        self,
        providers: list[Provider],
        *,
        ledger: Ledger,
        prices: PriceTable,
        settings: Settings,
        skipped: dict[str, str] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._providers = {p.name: p for p in providers}
        self.providers = [p.name for p in providers]
        self.skipped = dict(skipped or {})
        self.ledger = ledger
        self.prices = prices
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self.budget = BudgetGuard(
            ledger,
            budget_usd=settings.budget_usd,
            soft_fraction=settings.budget_soft_fraction,
            hard_fraction=settings.budget_hard_fraction,
            soft_mode=settings.budget_soft_mode,
            refresh_s=settings.budget_refresh_s,
            reader_daily_usd=settings.reader_daily_usd,
            reader_daily_calls=settings.reader_daily_calls,
            clock=clock,
            now=now,
        )
        self.breakers = {
            name: CircuitBreaker(
                name,
                threshold=settings.llm_breaker_failures,
                cooldown_s=settings.llm_breaker_cooldown_s,
                clock=clock,
            )
            for name in self.providers
        }
        self._limits = {
            name: asyncio.Semaphore(max(1, settings.llm_concurrency))
            for name in self.providers
        }
        self._stats = {name: _ProviderStats() for name in self.providers}
        self._stages: dict[str, _StageStats] = {}
        self._stage_started: dict[str, float] = {}
        self._refusals: Counter[tuple[str, str, str]] = Counter()
        self._inflight: dict[tuple[Any, ...], asyncio.Future[LLMResult[Any]]] = {}
        self.cache_hits = 0

    # the call ----------------------------------------------------------------

    async def complete_json(
        self,
        schema: type[T],
        *,
        stage: str,
        system: str,
        user: str,
        prompt_version: str,
        source: str | None = None,
        reader_id: str | None = None,
        avoid: Collection[str] = (),
        optional: bool = False,
        max_tokens: int = 1024,
    ) -> LLMResult[T]:
        """Ask for one JSON object matching `schema`; raise `LLMUnavailable` if none."""
        stage_stats = self._stages.setdefault(stage, _StageStats())
        order = [n for n in self.providers if n not in avoid]
        order += [n for n in self.providers if n in avoid]
        if not order:
            stage_stats.unavailable += 1
            raise LLMUnavailable({"llm": "no provider configured", **self.skipped})

        messages: list[Message] = [
            {
                "role": "system",
                "content": f"{system.rstrip()}\n\n{schema_instruction(schema)}",
            },
            {"role": "user", "content": user},
        ]
        content_hash = _content_hash(messages)

        hit = self._cached(order, schema, prompt_version, content_hash)
        if hit is not None:
            self.cache_hits += 1
            stage_stats.cached += 1
            _LOGGER.debug(
                "llm %s served from cache (%s %s)", stage, hit.provider, hit.model
            )
            return hit

        # The same input asked twice at once is sent once; the second waits.
        key = (content_hash, prompt_version, tuple(order), reader_id, optional)
        pending = self._inflight.get(key)
        if pending is not None:
            result = await asyncio.shield(pending)
            self.cache_hits += 1
            stage_stats.cached += 1
            return replace(result, cached=True, cost_usd=0.0)

        future: asyncio.Future[LLMResult[Any]] = (
            asyncio.get_running_loop().create_future()
        )
        self._inflight[key] = future
        request = _Request(
            stage=stage,
            messages=messages,
            content_hash=content_hash,
            prompt_version=prompt_version,
            order=order,
            source=source,
            reader_id=reader_id,
            optional=optional,
            max_tokens=max_tokens,
        )
        try:
            result = await self._ask(schema, request)
        except asyncio.CancelledError:
            future.set_exception(
                LLMUnavailable({"llm": "the same request was cancelled"})
            )
            future.exception()  # the waiters, if any, read it; none is fine too
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]

    async def _ask(self, schema: type[T], request: _Request) -> LLMResult[T]:
        """Budget, deadline, then each provider in turn until one answers."""
        stage = request.stage
        stage_stats = self._stages[stage]
        refusal = self.budget.refusal(
            optional=request.optional, reader_id=request.reader_id
        )
        if refusal is not None:
            stage_stats.unavailable += 1
            raise LLMUnavailable(refusal)

        deadline = self._deadline(stage)
        if deadline <= self._clock():
            stage_stats.unavailable += 1
            raise LLMUnavailable({"llm": f"stage {stage} is past its deadline"})

        cheap = self.budget.cheap_models
        began = self._clock()
        run_id = current_context().get("run_id")
        reasons: dict[str, str] = {}
        refused_by: list[str] = []
        last_error: BaseException | None = None
        spent = 0.0
        for name in request.order:
            provider = self._providers[name]
            breaker = self.breakers[name]
            stats = self._stats[name]
            if not breaker.allow():
                reasons[name] = "circuit open after repeated failures"
                continue

            call = _Call(
                stage=stage,
                provider=name,
                model=provider.cheap_model if cheap else provider.model,
                prompt_version=request.prompt_version,
                source=request.source,
                reader_id=request.reader_id,
                run_id=run_id,
                deadline=deadline,
            )
            try:
                value = await self._serve(provider, call, request, schema)
            except ModerationRefused as exc:
                breaker.release()  # a refusal says nothing about the vendor's health
                stats.refused += 1
                self._refusals[(name, request.source or "", stage)] += 1
                reasons[name] = f"refused: {exc.message or 'content filter'}"
                refused_by.append(name)
                last_error = exc
                _LOGGER.warning(
                    "llm %s refused by %s (source %s): trying the next provider",
                    stage,
                    name,
                    request.source or "-",
                )
            except _FAILURES as exc:
                if is_disabling(exc):
                    breaker.trip(describe(exc))
                else:
                    breaker.failure()
                stats.failed += 1
                reasons[name] = describe(exc)
                last_error = exc
                _LOGGER.warning("llm %s failed on %s: %s", stage, name, describe(exc))
            spent += call.cost_usd
            if name in reasons:
                if name != request.order[-1]:
                    stats.fallbacks += 1
                continue

            breaker.success()
            stats.ok += 1
            stage_stats.served[name] += 1
            if reasons:
                stage_stats.fallbacks += 1
            self._remember(call, value, request.content_hash)
            _LOGGER.info(
                "llm %s served by %s %s in %d ms, $%.6f, %d fallbacks",
                stage,
                name,
                call.model,
                int((self._clock() - began) * 1000),
                spent,
                len(reasons),
            )
            return LLMResult(
                value=value,
                provider=name,
                model=call.model,
                cached=False,
                prompt_version=request.prompt_version,
                cost_usd=spent,
            )

        stage_stats.unavailable += 1
        raise LLMUnavailable(reasons, refused_by=refused_by) from last_error

    async def _serve(
        self, provider: Provider, call: _Call, request: _Request, schema: type[T]
    ) -> T:
        """One provider's answer: retried while transient, repaired once if unusable."""
        messages, max_tokens = request.messages, request.max_tokens
        try:
            return await self._retrying(provider, call, messages, schema, max_tokens)
        except BadOutput as bad:
            self._stats[provider.name].repairs += 1
            if bad.kind == "length":
                max_tokens = min(max_tokens * 2, self._settings.llm_max_tokens_cap)
            _LOGGER.info(
                "llm %s reply from %s unusable (%s): asking once for a repair",
                call.stage,
                provider.name,
                bad.kind,
            )
            repaired = repair_messages(messages, bad)
            return await self._retrying(provider, call, repaired, schema, max_tokens)

    async def _retrying(
        self,
        provider: Provider,
        call: _Call,
        messages: list[Message],
        schema: type[T],
        max_tokens: int,
    ) -> T:
        settings = self._settings
        stats = self._stats[provider.name]

        def wait(state: RetryCallState) -> float:
            # Full jitter, but never sooner than the vendor asked.
            ceiling = min(
                settings.llm_retry_max_wait_s,
                settings.llm_retry_wait_s * 2 ** (state.attempt_number - 1),
            )
            asked = _asked_wait(state) or 0.0
            return max(asked, random.uniform(0, ceiling))

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number > settings.llm_retries:
                return True
            asked = _asked_wait(state)
            if asked is not None and asked > settings.llm_retry_after_max_s:
                return True  # a long wait is better spent on the next provider
            return self._clock() + state.upcoming_sleep >= call.deadline

        def before_sleep(state: RetryCallState) -> None:
            stats.retries += 1
            _LOGGER.info(
                "llm %s retrying %s in %.2f s after %s",
                call.stage,
                provider.name,
                state.upcoming_sleep,
                _describe_outcome(state),
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait,
            stop=stop,
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,  # callers see the vendor's error, not a RetryError
        )
        async for attempt in retrying:
            with attempt:
                return await self._request(provider, call, messages, schema, max_tokens)
        raise AssertionError("tenacity ended without an outcome")  # pragma: no cover

    async def _request(
        self,
        provider: Provider,
        call: _Call,
        messages: list[Message],
        schema: type[T],
        max_tokens: int,
    ) -> T:
        """Exactly one HTTP request, timed, priced and written to the ledger."""
        stats = self._stats[provider.name]
        async with self._limits[provider.name]:
            remaining = call.deadline - self._clock()
            if remaining <= 0:
                raise TimeoutError(f"{call.stage} deadline passed before the request")
            at = self._now()
            started = time.perf_counter()
            stats.calls += 1
            try:
                async with asyncio.timeout(
                    min(self._settings.llm_timeout_s, remaining)
                ):
                    completion = await provider.complete(
                        model=call.model, messages=messages, max_tokens=max_tokens
                    )
            except _FAILURES as exc:
                self._record(call, at, started, None, 0.0, "none", exc=exc)
                raise

        cost, tier = self._price(call, completion, at)
        try:
            value = parse_completion(completion, schema, provider.name)
        except LLMError as exc:
            self._record(call, at, started, completion, cost, tier, exc=exc)
            raise
        self._record(call, at, started, completion, cost, tier)
        return value

    def _price(
        self, call: _Call, completion: Completion, at: datetime
    ) -> tuple[float, str]:
        usage = completion.usage
        cost, tier = self.prices.cost(call.provider, call.model, usage, at)
        stats = self._stats[call.provider]
        stats.cost_usd += cost
        stats.prompt_tokens += usage.prompt_tokens
        stats.cache_hit_tokens += usage.cache_hit_tokens
        stats.completion_tokens += usage.completion_tokens
        call.cost_usd += cost
        return cost, tier

    def _record(
        self,
        call: _Call,
        at: datetime,
        started: float,
        completion: Completion | None,
        cost: float,
        tier: str,
        *,
        exc: BaseException | None = None,
    ) -> None:
        if exc is None:
            outcome = "ok"
        elif isinstance(exc, ModerationRefused):
            outcome = "refused"
        elif isinstance(exc, BadOutput):
            outcome = "bad_output"
        elif is_transient(exc):
            outcome = "transient"
        else:
            outcome = "error"
        usage = completion.usage if completion else None
        record = CallRecord(
            at=at,
            stage=call.stage,
            provider=call.provider,
            model=call.model,
            outcome=outcome,
            tier=tier,
            cost_usd=cost,
            prompt_version=call.prompt_version,
            run_id=call.run_id,
            source=call.source,
            reader_id=call.reader_id,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            cache_hit_tokens=usage.cache_hit_tokens if usage else 0,
            cache_miss_tokens=usage.cache_miss_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            reasoning_tokens=usage.reasoning_tokens if usage else 0,
            latency_ms=int((time.perf_counter() - started) * 1000),
            error=describe(exc) if exc is not None else None,
        )
        self.budget.add(cost)
        try:
            self.ledger.record(record)
        except SQLAlchemyError as db_error:
            # Losing a ledger row must not lose the answer it paid for.
            _LOGGER.error(
                "llm ledger row lost (%s %s, $%.6f): %s",
                call.provider,
                call.model,
                cost,
                describe(db_error),
            )

    # cache, deadlines ------------------------------------------------------------

    def _cached(
        self, order: list[str], schema: type[T], prompt_version: str, content_hash: str
    ) -> LLMResult[T] | None:
        models = []
        for name in order:
            models += [self._providers[name].model, self._providers[name].cheap_model]
        keys = [
            cache_key(m, prompt_version, content_hash) for m in dict.fromkeys(models)
        ]
        for entry in self.ledger.cached(keys):
            try:
                value = schema.model_validate(entry["value"])
            except ValidationError:
                continue
            return LLMResult(
                value=value,
                provider=entry["provider"],
                model=entry["model"],
                cached=True,
                prompt_version=prompt_version,
                cost_usd=0.0,
            )
        return None

    def _remember(self, call: _Call, value: BaseModel, content_hash: str) -> None:
        try:
            self.ledger.remember(
                cache_key(call.model, call.prompt_version, content_hash),
                value=value.model_dump(mode="json"),
                model=call.model,
                prompt_version=call.prompt_version,
                content_hash=content_hash,
                provider=call.provider,
                stage=call.stage,
                now=self._now(),
            )
        except SQLAlchemyError as db_error:
            _LOGGER.error("llm result not cached: %s", describe(db_error))

    def _call_budget_s(self) -> float:
        return self._settings.llm_call_deadline_s

    def begin_stage(self, stage: str) -> None:
        """Start a stage's deadline clock now (else it starts at its first call).

        A chain that lives across runs, as in a long-lived web container,
        calls this at the start of each run's stage.
        """
        self._stage_started[stage] = self._clock()

    def _deadline(self, stage: str) -> float:
        now = self._clock()
        started = self._stage_started.setdefault(stage, now)
        return min(
            now + self._call_budget_s(), started + self._settings.llm_stage_deadline_s
        )

    # reporting ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Per provider: calls, ok, failed, refused, fallbacks, cost_usd, tokens, ..."""
        out = {}
        for name, stats in self._stats.items():
            entry = stats.as_dict()
            entry["breaker"] = self.breakers[name].state
            out[name] = entry
        return out

    def report(self) -> dict[str, Any]:
        """For the run report: providers, who served each stage, refusals, money."""
        return {
            "providers": self.stats(),
            "skipped": dict(self.skipped),
            "stages": {
                stage: {
                    "served": dict(s.served),
                    "cached": s.cached,
                    "fallbacks": s.fallbacks,
                    "unavailable": s.unavailable,
                }
                for stage, s in self._stages.items()
            },
            "refusals": [
                {"provider": p, "source": src or None, "stage": st, "count": n}
                for (p, src, st), n in sorted(self._refusals.items())
            ],
            "cache_hits": self.cache_hits,
            "budget": {
                "state": self.budget.state(),
                "month_to_date_usd": round(self.budget.spent(), 6),
                "budget_usd": self.budget.budget_usd,
            },
        }

    def log_summary(self) -> None:
        """One line with the run's LLM totals, and a warning per failing provider."""
        stats = self.stats()
        for name, entry in stats.items():
            tried = entry["ok"] + entry["failed"] + entry["refused"]
            if tried >= _WATCH_MIN_ITEMS and entry["ok"] / tried < _WATCH_SUCCESS_RATE:
                # A fallback that silently fails would otherwise only show as cost.
                _LOGGER.warning(
                    "llm provider %s answered only %d of %d items "
                    "(%d failed, %d refused)",
                    name,
                    entry["ok"],
                    tried,
                    entry["failed"],
                    entry["refused"],
                )
        _LOGGER.info(
            "llm totals: %d served, %d from cache, %d fallbacks, %d refusals, $%.4f",
            sum(s["ok"] for s in stats.values()),
            self.cache_hits,
            sum(s.fallbacks for s in self._stages.values()),
            sum(self._refusals.values()),
            sum(s["cost_usd"] for s in stats.values()),
            extra={"fields": {"llm": self.report()}},
        )

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()


def _asked_wait(state: RetryCallState) -> float | None:
    exc = state.outcome.exception() if state.outcome else None
    return retry_after_seconds(exc) if exc is not None else None


def _describe_outcome(state: RetryCallState) -> str:
    exc = state.outcome.exception() if state.outcome else None
    return describe(exc) if exc is not None else "no error"


def _content_hash(messages: list[Message]) -> str:
    payload = json.dumps(messages, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()
