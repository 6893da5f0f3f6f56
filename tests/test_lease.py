"""Leases: one holder at a time, on both engines, across threads and processes."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from infra import lease
from infra.store import Store

T0 = datetime(2025, 11, 14, 8, 0, tzinfo=UTC)


def test_a_held_lease_refuses_a_second_holder(any_store: Store) -> None:
    assert lease.acquire(any_store, "digest", 600, "run-a", now=T0)
    assert not lease.acquire(any_store, "digest", 600, "run-b", now=T0)
    assert lease.holder_of(any_store, "digest", now=T0) == "run-a"


def test_an_expired_lease_is_taken_over(any_store: Store) -> None:
    lease.acquire(any_store, "digest", 600, "crashed-run", now=T0)
    later = T0 + timedelta(seconds=601)

    assert lease.acquire(any_store, "digest", 600, "next-run", now=later)
    assert lease.holder_of(any_store, "digest", now=later) == "next-run"


def test_the_same_holder_renews_its_lease(any_store: Store) -> None:
    """A retried Modal input keeps its call id and must not lock itself out."""
    lease.acquire(any_store, "collect", 60, "call-1", now=T0)
    renewed_at = T0 + timedelta(seconds=50)

    assert lease.acquire(any_store, "collect", 60, "call-1", now=renewed_at)
    assert not lease.acquire(
        any_store, "collect", 60, "call-2", now=T0 + timedelta(seconds=100)
    )


def test_only_the_holder_can_release(any_store: Store) -> None:
    lease.acquire(any_store, "digest", 600, "run-a", now=T0)

    assert not lease.release(any_store, "digest", "run-b")
    assert lease.release(any_store, "digest", "run-a")
    assert lease.acquire(any_store, "digest", 600, "run-b", now=T0)


def test_held_releases_on_exit_and_reports_refusal(any_store: Store) -> None:
    with lease.held(any_store, "digest", 600, "run-a") as got_a:
        with lease.held(any_store, "digest", 600, "run-b") as got_b:
            assert (got_a, got_b) == (True, False)
        assert lease.holder_of(any_store, "digest") == "run-a"

    assert lease.holder_of(any_store, "digest") is None


def test_threads_racing_for_free_and_expired_leases_get_one_winner(
    any_store: Store,
) -> None:
    names = [f"job-{n}" for n in range(10)]
    for name in names[5:]:
        lease.acquire(any_store, name, 1, "dead-holder", now=T0)
    racers = 4
    barrier = threading.Barrier(racers)

    def race(n: int) -> list[bool]:
        store = Store(any_store.url)
        try:
            barrier.wait()
            return [lease.acquire(store, name, 600, f"racer-{n}") for name in names]
        finally:
            store.close()

    with ThreadPoolExecutor(racers) as pool:
        results = list(pool.map(race, range(racers)))

    winners_per_name = [sum(r[i] for r in results) for i in range(len(names))]
    assert winners_per_name == [1] * len(names)


def _race_in_process(url: str, name: str, holder: str, start: Any, out: Any) -> None:
    store = Store(url)
    try:
        start.wait()
        out.put((holder, lease.acquire(store, name, 600, holder)))
    finally:
        store.close()


def test_processes_racing_for_one_lease_get_one_winner(store_url: str) -> None:
    Store(store_url).close()
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_race_in_process, args=(store_url, "digest", f"p{n}", start, out)
        )
        for n in range(2)
    ]
    for proc in procs:
        proc.start()

    start.set()
    results = dict(out.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)

    assert sorted(results.values()) == [False, True]
    winner = next(h for h, won in results.items() if won)
    store = Store(store_url)
    assert lease.holder_of(store, "digest") == winner
    store.close()
