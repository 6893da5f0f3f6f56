"""Concurrency and conditional GET of the fetch stage, measured on 127.0.0.1.

Ten feeds answer after different delays (0.2 s to 1.0 s). One fetch of
all ten should take about as long as the slowest one alone, not their
sum: the first ratio is wall time / slowest delay (goal: under 1.5). A
second fetch of the unchanged feeds sends the remembered validators and
should cost a few 304s: the second ratio is the bytes on the wire of the
second fetch / the first (goal: under 5%), counted at the server (request
line and headers in; status line, headers and body out).

Run from the repository root: `.venv/bin/python bench/fetch_bench.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from functions.fetch import FetchPolicy, fetch_all  # noqa: E402
from functions.models import Source  # noqa: E402
from tests.feedserver import FeedServer, Reply, item, rss, serve  # noqa: E402

DELAYS = [round(0.2 + 0.8 * n / 9, 3) for n in range(10)]
ITEMS_PER_FEED = 40


def sample_feed(n: int) -> bytes:
    """A feed of about 25 kB written for this bench."""
    paragraph = (
        "The council met on Thursday to discuss ferry timetables, library hours "
        "and the budget for street lighting; members asked for a report by spring. "
    )
    items = [
        item(
            f"Feed {n} story {k}: council notes on local services",
            link=f"https://bench.example/{n}/{k}",
            guid=f"bench-{n}-{k}",
            date="Fri, 14 Nov 2025 08:00:00 +0000",
            description=paragraph * 2,
        )
        for k in range(ITEMS_PER_FEED)
    ]
    return rss(*items, title=f"Bench feed {n}").encode()


def program(server: FeedServer) -> list[Source]:
    sources = []
    for n, delay in enumerate(DELAYS):
        body = sample_feed(n)
        url = server.route(
            f"feed{n}",
            Reply(body, delay_s=delay, etag=f'"bench-{n}-v1"'),
        )
        sources.append(Source(f"feed{n}", url))
    return sources


def wire_total(server: FeedServer) -> int:
    return sum(server.wire_bytes.values())


async def one_round(server: FeedServer, sources: list[Source]) -> tuple[float, float]:
    """One cold fetch and one conditional fetch; returns (wall ratio, byte ratio)."""
    policy = FetchPolicy()
    server.wire_bytes.clear()

    started = time.perf_counter()
    first = await fetch_all(sources, policy)
    wall = time.perf_counter() - started
    first_bytes = wire_total(server)
    assert all(o.status == "ok" for o in first), [o.error for o in first]

    validators = {
        o.source.name: {"etag": o.etag, "last_modified": o.last_modified} for o in first
    }
    server.wire_bytes.clear()
    second = await fetch_all(sources, policy, validators=validators)
    second_bytes = wire_total(server)
    assert all(o.status == "not_modified" for o in second)

    return wall / max(DELAYS), second_bytes / first_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with serve() as server:
        sources = program(server)
        results = [asyncio.run(one_round(server, sources)) for _ in range(args.rounds)]
        server.wire_bytes.clear()
        asyncio.run(fetch_all(sources, FetchPolicy()))
        first_bytes = wire_total(server)

    walls = [w for w, _ in results]
    ratios = [b for _, b in results]
    print(f"sources: {len(DELAYS)}, delays {min(DELAYS)}s to {max(DELAYS)}s")
    print(f"sum of delays: {sum(DELAYS):.1f}s; slowest alone: {max(DELAYS):.1f}s")
    print(f"first fetch wire bytes: {first_bytes}")
    print(
        f"wall / slowest delay: median {statistics.median(walls):.3f}, "
        f"worst {max(walls):.3f} over {args.rounds} rounds (goal < 1.5)"
    )
    print(
        f"second fetch bytes / first: median {statistics.median(ratios):.2%}, "
        f"worst {max(ratios):.2%} (goal < 5%)"
    )


if __name__ == "__main__":
    main()
