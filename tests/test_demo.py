"""`digest demo` runs the whole job offline on the shipped sample feeds."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
from click.testing import CliRunner

from functions.cli import _register, cli
from functions.demo import SAMPLES, _shift_dates, newest_sample_time, serve_samples
from functions.sources import load_sources


def _invoke(*args: str) -> dict:
    _register()
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_demo_collects_every_sample_feed_and_writes_a_preview(tmp_path: Path) -> None:
    report = _invoke("demo", "--json")

    sources = load_sources(SAMPLES / "sources.toml", base_url="http://x")
    assert {s["name"] for s in report["sources"]} == {s.name for s in sources}
    assert all(s["status"] == "ok" for s in report["sources"]), report["sources"]
    assert report["items_new"] >= 80
    assert report["status"] == "ok"
    preview = Path(report["preview"])
    assert preview.exists()
    assert "<html" in preview.read_text(encoding="utf-8").lower()


def test_demo_starts_from_a_clean_state_each_time(tmp_path: Path) -> None:
    first = _invoke("demo", "--json")
    second = _invoke("demo", "--json")

    assert second["items_new"] == first["items_new"]


def test_sample_server_shifts_dates_so_the_newest_item_is_an_hour_old() -> None:
    with serve_samples() as base:
        body = httpx.get(f"{base}/xinhua-en.xml").content
        missing = httpx.get(f"{base}/../pyproject.toml")

    assert missing.status_code == 404
    assert b"<pubDate>" in body
    assert newest_sample_time().year == 2026
    shifted = _shift_dates(
        b"<pubDate>Mon, 30 Nov 2026 08:00:00 +0800</pubDate>", timedelta(days=1)
    )
    assert shifted == b"<pubDate>Tue, 01 Dec 2026 08:00:00 +0800</pubDate>"
