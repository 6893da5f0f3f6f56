"""Broadcast throughput against a fake Bot API that enforces Telegram's limits.

The fake (tests/fakes/telegram_api.py, served on 127.0.0.1) answers 429 to
any message past 30 in a second or a second message to one chat within a
second. We broadcast one message to each of N readers through the real
python-telegram-bot and report messages delivered per second divided by 30
(the goal is above 0.85), with lost and duplicated messages counted from
what the fake received. Scenarios:

  clean     the fake only enforces the limits
  flood     it also answers 429 (retry_after 1 s) to one message in twenty
  aiolimit  PTB's own AIORateLimiter (30/s, bursts) instead of our pacing,
            for comparison, on the clean fake
  resume    a broadcast cancelled halfway, then run again

    python bench/broadcast_bench.py                  # clean and flood, 1,000 readers
    python bench/broadcast_bench.py --scenario all --readers 300
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from telegram import Bot  # noqa: E402
from telegram.ext import AIORateLimiter, ExtBot  # noqa: E402

from bot.channels import BroadcastReport, TelegramChannel, broadcast  # noqa: E402
from bot.client import make_request  # noqa: E402
from bot.limits import RateLimiter  # noqa: E402
from infra.readers import Reader, save_reader  # noqa: E402
from infra.store import Store  # noqa: E402
from tests.bot_factories import make_digest  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram  # noqa: E402

TELEGRAM_RATE = 30


@dataclass
class Outcome:
    scenario: str
    readers: int
    delivered: int
    seconds: float
    lost: int
    duplicated: int
    flood_replies: int
    over_limit: int

    @property
    def ratio(self) -> float:
        return self.delivered / self.seconds / TELEGRAM_RATE if self.seconds else 0.0


def _readers(store: Store, count: int) -> list[Reader]:
    return [
        save_reader(store, Reader(id="", chat_id=str(10_000 + n))) for n in range(count)
    ]


def _count(fake: FakeTelegram, readers: list[Reader]) -> tuple[int, int]:
    per_chat = Counter(m.chat_id for m in fake.messages)
    lost = sum(1 for r in readers if per_chat[r.chat_id] == 0)
    duplicated = sum(n - 1 for n in per_chat.values() if n > 1)
    return lost, duplicated


def _bot(fake: FakeTelegram, *, ptb_limiter: bool = False) -> Bot:
    if ptb_limiter:
        return ExtBot(
            fake.token,
            base_url=fake.base_url,
            request=make_request(),
            rate_limiter=AIORateLimiter(overall_max_rate=30, max_retries=5),
        )
    return Bot(fake.token, base_url=fake.base_url, request=make_request())


async def run_scenario(fake: FakeTelegram, scenario: str, count: int) -> Outcome:
    fake.reset(
        global_rate=TELEGRAM_RATE,
        chat_interval=1.0,
        flood_every=20 if scenario == "flood" else 0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        readers = _readers(store, count)
        jobs = [(r, make_digest(reader_id=r.id)) for r in readers]

        async with _bot(fake, ptb_limiter=scenario == "aiolimit") as bot:
            limiter = RateLimiter()
            channel = TelegramChannel(bot, store, limiter=limiter)
            if scenario == "aiolimit":
                # PTB paces; our channel must not pace as well.
                channel.limiter = RateLimiter(rate=10_000, chat_interval=0.0)
            started = time.monotonic()
            if scenario == "resume":
                task = asyncio.create_task(broadcast(channel, jobs))
                while len(fake.messages) < count // 2:
                    await asyncio.sleep(0.01)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            report: BroadcastReport = await broadcast(channel, jobs)
            seconds = time.monotonic() - started
        store.close()

    lost, duplicated = _count(fake, readers)
    if scenario != "resume" and report.statuses != {"sent": count}:
        print(f"  statuses: {report.statuses}", file=sys.stderr)
    return Outcome(
        scenario=scenario,
        readers=count,
        delivered=len(fake.messages),
        seconds=seconds,
        lost=lost,
        duplicated=duplicated,
        flood_replies=fake.flood_replies,
        over_limit=fake.rate_violations,
    )


async def main(scenarios: list[str], count: int) -> int:
    # AIORateLimiter logs a traceback each time it gives up on a 429; the
    # comparison counts those in its own columns instead.
    logging.getLogger("telegram").setLevel(logging.CRITICAL)
    fake = FakeTelegram().start()
    try:
        outcomes = []
        for scenario in scenarios:
            print(f"running {scenario} with {count} readers…", file=sys.stderr)
            outcomes.append(await run_scenario(fake, scenario, count))
    finally:
        fake.stop()

    print(
        f"{'scenario':<10} {'readers':>7} {'sent':>6} {'seconds':>8} "
        f"{'msg/s':>6} {'ratio':>6} {'lost':>5} {'dup':>4} {'429s':>5} {'over':>5}"
    )
    for o in outcomes:
        print(
            f"{o.scenario:<10} {o.readers:>7} {o.delivered:>6} {o.seconds:>8.1f} "
            f"{o.delivered / o.seconds:>6.1f} {o.ratio:>6.3f} {o.lost:>5} "
            f"{o.duplicated:>4} {o.flood_replies:>5} {o.over_limit:>5}"
        )
    print(
        "ratio = messages delivered per second / 30; 429s = flood replies from the "
        "fake; over = of those, caused by going over the limits"
    )
    return 0 if all(o.lost == 0 and o.duplicated == 0 for o in outcomes) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument(
        "--scenario",
        choices=["clean", "flood", "aiolimit", "resume", "all"],
        action="append",
    )
    args = parser.parse_args()
    chosen = args.scenario or ["clean", "flood"]
    if "all" in chosen:
        chosen = ["clean", "flood", "aiolimit", "resume"]
    sys.exit(asyncio.run(main(chosen, args.readers)))
