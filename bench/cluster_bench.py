"""How clustering scales, and how well it matches the shipped labeled set.

    python bench/cluster_bench.py [--sizes 1000 10000] [--later 1000]

Each size runs in its own process, on a fresh SQLite store with the local
index (hashing embedder), so times and peak memory are measured apart.
Synthetic items are events told by one to six outlets in English or
Chinese, as rewrites (shuffled sentences, swapped words, shared numbers),
spread over five days. Prints:

1. clustering time for each size and the ratio of the largest to the
   smallest (goal: 10,000 items in under 10 s here, under 15x growth for
   10x items), peak resident memory, and pairwise F1 on the synthetic gold;
2. the time to cluster `--later` new items against the items already
   stored (the daily case: a small run against a window of stored vectors);
3. the hashing embedder's throughput in items per second;
4. pairwise F1 on `functions/samples/dedup_labeled.jsonl`, same-language and
   cross-language apart, when the file exists.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from functions.cluster import ClusterConfig, cluster_items  # noqa: E402
from functions.dedup_eval import (  # noqa: E402
    evaluate,
    load_labeled,
    pairwise,
)
from functions.models import Item  # noqa: E402
from infra import db  # noqa: E402
from infra.config import Settings  # noqa: E402
from infra.embed import HashingEmbedder, embedding_text  # noqa: E402
from infra.store import Store  # noqa: E402
from infra.vector import LocalVectorIndex  # noqa: E402

LABELED = ROOT / "functions" / "samples" / "dedup_labeled.jsonl"
START = datetime(2026, 3, 1, tzinfo=UTC)
SPAN_HOURS = 120
# Pseudo-words from syllables and a few thousand CJK characters: enough
# vocabulary that unrelated items share little beyond function words, as
# real news does.
_SYLLABLES = [
    c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "an", "or")
]
EN_WORDS = sorted(
    {a + b + c for a in _SYLLABLES[:40] for b in _SYLLABLES for c in "nst"}
)
FILLER = "the a of in on and to said with for after as by at from was were".split()
ZH_CHARS = "".join(chr(0x4E00 + k) for k in range(0, 6000, 2))


def _event_words(rng: random.Random, lang: str) -> list[str]:
    if lang == "zh":
        return ["".join(rng.sample(ZH_CHARS, 2)) for _ in range(12)]
    return rng.sample(EN_WORDS, 12)


def _rewrite(
    rng: random.Random, words: list[str], numbers: list[str], lang: str
) -> tuple[str, str]:
    kept = rng.sample(words, 9)
    if lang == "zh":
        title = "".join(kept[:5]) + numbers[0]
        sentences = [
            "".join(rng.sample(kept, 4)) + numbers[k % len(numbers)] + "。"
            for k in range(5)
        ]
        return title, "".join(sentences)
    title = " ".join(kept[:6] + [numbers[0]]).capitalize()
    sentences = []
    for k in range(5):
        body = rng.sample(kept, 5) + rng.sample(FILLER, 4) + [numbers[k % len(numbers)]]
        rng.shuffle(body)
        sentences.append(" ".join(body).capitalize() + ".")
    return title, " ".join(sentences)


def synthetic(n: int, seed: int = 7) -> tuple[list[Item], dict[str, str]]:
    """n items in events of one to six members; returns items and gold labels."""
    rng = random.Random(seed)
    items: list[Item] = []
    gold: dict[str, str] = {}
    event = 0
    while len(items) < n:
        event += 1
        lang = "zh" if rng.random() < 0.4 else "en"
        words = _event_words(rng, lang)
        numbers = [str(rng.randint(10, 9999)) for _ in range(3)]
        at = START + timedelta(hours=rng.uniform(0, SPAN_HOURS))
        for k in range(min(rng.choice([1, 1, 2, 2, 3, 4, 6]), n - len(items))):
            title, text = _rewrite(rng, words, numbers, lang)
            item_id = f"e{event}-{k}"
            url = f"https://outlet{k}.example/{item_id}"
            items.append(
                Item(
                    id=item_id,
                    source=f"outlet{k}",
                    url=url,
                    title=title,
                    text=text,
                    lang=lang,
                    published=at + timedelta(minutes=rng.uniform(0, 600)),
                    keys=["url:" + url.split("://", 1)[-1]],
                )
            )
            gold[item_id] = f"e{event}"
    return items, gold


def _peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux and bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _labels(store: Store) -> dict[str, str]:
    with store.begin() as conn:
        rows = conn.execute(db.story_members.select()).all()
    return {r.item_id: r.story_id for r in rows}


async def _one(n: int, later: int) -> dict[str, float]:
    """Cluster n synthetic items in one run, then `later` more in a second run."""
    items, gold = synthetic(n + later)
    first, second = items[:n], items[n:]
    config = ClusterConfig.from_settings(Settings())
    baseline = _peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        index = LocalVectorIndex(store)
        now = max(i.published for i in first)

        started = time.perf_counter()
        report = await cluster_items(store, index, first, now=now, config=config)
        seconds = time.perf_counter() - started
        peak = _peak_rss_mb()
        labels = _labels(store)
        score = pairwise(labels, {i.id: gold[i.id] for i in first})

        later_s = 0.0
        if second:
            # The next run sees the stored ones through the index, as a day does.
            started = time.perf_counter()
            await cluster_items(store, index, second, now=now, config=config)
            later_s = time.perf_counter() - started
        store.close()
    return {
        "n": n,
        "seconds": seconds,
        "stories": report.stories_new,
        "duplicates": report.duplicates,
        "peak_rss_mb": peak,
        "baseline_rss_mb": baseline,
        "f1": score.f1,
        "later": later,
        "later_seconds": later_s,
    }


def _child(n: int, later: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", str(n), "--later", str(later)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _throughput() -> float:
    items, _ = synthetic(2000, seed=11)
    texts = [embedding_text(i.title, i.text) for i in items]
    embedder = HashingEmbedder()
    started = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - started)


async def _labeled() -> None:
    if not LABELED.exists():
        print(f"\n{LABELED.name}: not found, skipped")
        return
    from infra.store import Store as _Store

    records = load_labeled(LABELED)
    store = _Store("sqlite://")
    result = await evaluate(
        records,
        LocalVectorIndex(store),
        ClusterConfig.from_settings(Settings()),
        sweep=False,
    )
    store.close()
    print(f"\n{LABELED.name} ({result.items} items), local index, all sieves:")
    for label, key in (
        ("all pairs", "pairwise"),
        ("same-language pairs", "same_language"),
        ("cross-language pairs", "cross_language"),
    ):
        p = result.full[key]
        print(
            f"  {label:22} P {p['precision']:.3f}  R {p['recall']:.3f}  "
            f"F1 {p['f1']:.3f}"
        )
    print(f"  {'B-cubed':22} F1 {result.full['bcubed']['f1']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--later", type=int, default=1000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one is not None:
        import logging

        logging.disable(logging.INFO)
        print(json.dumps(asyncio.run(_one(args.one, args.later))))
        return

    rows = [_child(n, args.later if n == max(args.sizes) else 0) for n in args.sizes]
    print("items   seconds  stories  duplicates  peak RSS MB (+ over start)  pair F1")
    for r in rows:
        grown = r["peak_rss_mb"] - r["baseline_rss_mb"]
        print(
            f"{r['n']:>6} {r['seconds']:>8.2f} {r['stories']:>8} {r['duplicates']:>11}"
            f"  {r['peak_rss_mb']:>8.0f} (+{grown:.0f}){r['f1']:>18.3f}"
        )
    small, large = rows[0], rows[-1]
    ratio = large["seconds"] / small["seconds"]
    print(
        f"\n{large['n']} vs {small['n']} items: {ratio:.1f}x the time"
        f" for {large['n'] / small['n']:.0f}x the items"
    )
    if large["later"]:
        print(
            f"{large['later']} new items against {large['n']} stored: "
            f"{large['later_seconds']:.2f} s"
        )
    print(f"hashing embedder: {_throughput():,.0f} items/s")
    asyncio.run(_labeled())


if __name__ == "__main__":
    main()
