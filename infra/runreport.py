"""The run report: what one run did, stored in `runs.report` and read back here.

`functions.run` writes the report; `digest status`, the alerts and the
health endpoint read it only through the accessors below, so every field
the operator sees is named in this one place. Missing fields read as zero,
so a thin early report still shows up. The shape:

    {
      "run_id": "...", "kind": "collect" | "digest",
      "status": "ok" | "degraded" | "failed" | "skipped",
      "error": "...",                                   # failed runs
      "stages": {"collect": {"status": "ok" | "failed", "duration_s": 4.2,
                             "in": 0, "out": 180, "error": "..."}, ...},
      "sources": [{"name": "...", "status": "ok" | "not_modified" | "failed"
                   | "blocked" | "stale", "fetched": 20, "new": 3,
                   "error": "..."}],
      "items_new": 42,
      "dedup": {"exact": 10, "near": 4, "semantic": 2},
      "stories": 25,
      "summaries": {"llm": 20, "extractive": 5, "fallback": 0},
      "llm": {"calls": 30, "tokens_in": 51000, "tokens_out": 6000,
              "cost_usd": 0.021, "providers": {"deepseek": {...}}},
      "fallbacks": [{"kind": "provider" | "vector_index" | "summary",
                     "detail": "deepseek -> qwen"}],
      "readers_due": 12, "digests": 12,
      "deliveries": {"sent": 24, "failed": 0, "skipped": 1},
      "budget": {"month_to_date_usd": 3.2, "budget_usd": 50.0,
                 "soft_ratio": 0.6}
    }
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

FAILED_SOURCE_STATUSES = frozenset({"failed", "blocked", "error"})


def number(report: dict[str, Any], *path: str) -> float:
    """The number at `path` in `report`, or 0 when absent or not a number."""
    value: Any = report
    for key in path:
        if not isinstance(value, dict):
            return 0.0
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)


def sources(report: dict[str, Any]) -> list[dict[str, Any]]:
    value = report.get("sources")
    return [s for s in value if isinstance(s, dict)] if isinstance(value, list) else []


def failed_sources(report: dict[str, Any]) -> list[str]:
    return [
        str(s.get("name"))
        for s in sources(report)
        if s.get("status") in FAILED_SOURCE_STATUSES
    ]


def fallbacks(report: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    value = report.get("fallbacks")
    found = [f for f in value if isinstance(f, dict)] if isinstance(value, list) else []
    return [f for f in found if kind is None or f.get("kind") == kind]


def stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    stages = report.get("stages")
    value = stages.get(name) if isinstance(stages, dict) else None
    return value if isinstance(value, dict) else {}


def failed_stage(report: dict[str, Any]) -> str | None:
    """The first stage that failed, by the order the run recorded them."""
    stages = report.get("stages")
    if not isinstance(stages, dict):
        return None
    for name, info in stages.items():
        if isinstance(info, dict) and info.get("status") == "failed":
            return str(name)
    return None


@dataclass(frozen=True)
class RunMetrics:
    """One row of `digest status`: the numbers an operator scans first."""

    id: str
    kind: str
    status: str
    started_at: datetime
    duration_s: float
    items_new: int
    stories: int
    llm_calls: int
    cost_usd: float
    digests: int
    sent: int
    failed: int
    skipped: int
    failed_sources: int
    fallbacks: int
    error: str

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        return data


def metrics(run: dict[str, Any]) -> RunMetrics:
    """Read a stored run (a `Store.recent_runs` row) into its status-table row."""
    report = run.get("report") or {}
    started: datetime = run["started_at"]
    finished: datetime | None = run.get("finished_at")
    return RunMetrics(
        id=str(run["id"]),
        kind=str(run["kind"]),
        status=str(run["status"]),
        started_at=started,
        duration_s=(finished - started).total_seconds() if finished else 0.0,
        items_new=int(number(report, "items_new")),
        stories=int(number(report, "stories")),
        llm_calls=int(number(report, "llm", "calls")),
        cost_usd=number(report, "llm", "cost_usd"),
        digests=int(number(report, "digests")),
        sent=int(number(report, "deliveries", "sent")),
        failed=int(number(report, "deliveries", "failed")),
        skipped=int(number(report, "deliveries", "skipped")),
        failed_sources=len(failed_sources(report)),
        fallbacks=len(fallbacks(report)),
        error=str(report.get("error") or ""),
    )
