"""Print the counts of the labeled clustering set (items, clusters, pairs)."""

import json
import sys
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path


def main(path: Path) -> None:
    """Load the JSONL file line by line and print its counts."""
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
    clusters: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        clusters[row["cluster"]].append(row)
    same = cross = 0
    for members in clusters.values():
        for a, b in combinations(members, 2):
            if a["lang"] == b["lang"]:
                same += 1
            else:
                cross += 1
    bilingual = sum(len({m["lang"] for m in ms}) == 2 for ms in clusters.values())
    days = Counter(row["published"][:10] for row in rows)
    print(f"items              {len(rows)}")
    print(f"languages          {dict(Counter(row['lang'] for row in rows))}")
    print(f"sources            {len({row['source'] for row in rows})}")
    print(f"clusters           {len(clusters)}")
    print(f"singletons         {sum(len(ms) == 1 for ms in clusters.values())}")
    print(f"bilingual clusters {bilingual}")
    print(f"same-lang pairs    {same}")
    print(f"cross-lang pairs   {cross}")
    print(f"largest cluster    {max(len(ms) for ms in clusters.values())}")
    print(f"days (local)       {dict(sorted(days.items()))}")


if __name__ == "__main__":
    default = Path(__file__).parent / "dedup_labeled.jsonl"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
