"""The pacing rules, on a virtual clock so that no test waits for real time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable

import pytest

from bot.limits import FLOOD_STREAK, RateLimiter


class VirtualClock:
    """Time that moves only when every task is asleep, to the earliest wake-up."""

    def __init__(self) -> None:
        self.now = 100.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.oversleep: list[float] = []  # added to the next sleeps, one each

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        late = self.oversleep.pop(0) if self.oversleep else 0.0
        heapq.heappush(
            self._sleepers,
            (self.now + max(seconds, 0.0) + late, next(self._order), wake),
        )
        await wake

    async def run(self, *coroutines: Awaitable[None]) -> None:
        tasks = [asyncio.ensure_future(c) for c in coroutines]
        while not all(task.done() for task in tasks):
            for _ in range(10):
                await asyncio.sleep(0)
            if self._sleepers:
                wake_at, _, wake = heapq.heappop(self._sleepers)
                self.now = max(self.now, wake_at)
                wake.set_result(None)
        for task in tasks:
            task.result()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


def limiter(clock: VirtualClock, **options) -> RateLimiter:
    return RateLimiter(clock=clock, sleep=clock.sleep, **options)


async def test_sends_to_different_chats_are_spaced_by_the_global_rate(
    clock: VirtualClock,
) -> None:
    pace = limiter(clock, rate=20, chat_interval=1.0)
    granted = []

    async def send_all() -> None:
        for chat in range(5):
            await pace.wait(chat)
            granted.append(clock.now)

    await clock.run(send_all())

    gaps = [round(b - a, 6) for a, b in zip(granted, granted[1:], strict=False)]
    assert gaps == [0.05] * 4


async def test_one_chat_waits_its_interval_without_holding_up_others(
    clock: VirtualClock,
) -> None:
    pace = limiter(clock, rate=10, chat_interval=1.0)
    order: list[tuple[str, float]] = []

    async def send(chat: str) -> None:
        await pace.wait(chat)
        order.append((chat, round(clock.now - 100.0, 6)))

    await clock.run(send("a"), send("a"), send("b"), send("c"))

    assert order == [("a", 0.0), ("b", 0.1), ("c", 0.2), ("a", 1.0)]


async def test_concurrent_waiters_never_beat_the_gap(clock: VirtualClock) -> None:
    pace = limiter(clock, rate=30, chat_interval=0.0)
    granted: list[float] = []

    async def send(chat: int) -> None:
        await pace.wait(chat)
        granted.append(clock.now)

    await clock.run(*(send(n) for n in range(90)))

    gaps = [b - a for a, b in zip(granted, granted[1:], strict=False)]
    assert min(gaps) >= 1 / 30 - 1e-9
    # In any one second, never more than the rate.
    assert max(sum(1 for t in granted if s <= t < s + 1 - 1e-9) for s in granted) <= 30


async def test_a_late_wakeup_is_not_made_up_with_a_burst(clock: VirtualClock) -> None:
    pace = limiter(clock, rate=10, chat_interval=0.0)
    granted: dict[str, float] = {}

    async def send(chat: str) -> None:
        await pace.wait(chat)
        granted[chat] = clock.now - 100.0

    clock.oversleep = [0.08]  # the loop was busy when "b" was due
    await clock.run(send("a"), send("b"), send("c"))

    assert granted["a"] == pytest.approx(0.0)
    assert granted["b"] == pytest.approx(0.18)
    assert granted["c"] - granted["b"] >= 0.1 - 1e-9


async def test_a_slightly_late_wakeup_keeps_the_pace(clock: VirtualClock) -> None:
    pace = limiter(clock, rate=10, chat_interval=0.0)
    granted: dict[str, float] = {}

    async def send(chat: str) -> None:
        await pace.wait(chat)
        granted[chat] = clock.now - 100.0

    clock.oversleep = [0.001]
    await clock.run(send("a"), send("b"), send("c"))

    assert granted["b"] == pytest.approx(0.101)
    assert granted["c"] == pytest.approx(0.2)


async def test_a_429_holds_only_that_chat(clock: VirtualClock) -> None:
    pace = limiter(clock, rate=100, chat_interval=0.0)
    granted = {}

    async def send(chat: str) -> None:
        await pace.wait(chat)
        granted[chat] = clock.now - 100.0

    await clock.run(send("a"))
    pace.retry_after("a", 3)
    await clock.run(send("a"), send("b"))

    assert granted["b"] < 0.1
    assert granted["a"] == pytest.approx(3.0)


async def test_429s_in_a_row_pause_every_chat(clock: VirtualClock) -> None:
    pace = limiter(clock, rate=100, chat_interval=0.0)

    for chat in range(FLOOD_STREAK):
        pace.retry_after(f"c{chat}", 5)
    await clock.run(pace.wait("other"))

    assert clock.now - 100.0 == pytest.approx(5.0)


async def test_a_success_breaks_the_streak(clock: VirtualClock) -> None:
    pace = limiter(clock, rate=100, chat_interval=0.0)

    for chat in range(FLOOD_STREAK - 1):
        pace.retry_after(f"c{chat}", 5)
    pace.succeeded()
    pace.retry_after("late", 5)
    await clock.run(pace.wait("other"))

    assert clock.now - 100.0 < 0.1


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0)
