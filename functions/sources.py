"""Load the configured sources: a `sources.toml` file or a directory of feed files."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from functions.models import Ownership, Source

FEED_SUFFIXES = {".xml", ".rss", ".atom", ".rdf", ".feed"}
LANGS = ("en", "zh", "auto")
_FIELDS = {f.name for f in fields(Source)}
_OWNERSHIP = set(get_args(Ownership))
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "url": (str,),
    "lang": (str,),
    "weight": (int, float),
    "timezone": (str,),
    "ownership": (str,),
    "label": (str,),
    "max_age_hours": (int, float),
    "gmt_means_local": (bool,),
}


class SourcesError(ValueError):
    """The sources file or directory cannot be used; the message says why."""


def load_sources(path: Path | str, *, base_url: str | None = None) -> list[Source]:
    """Read sources from a TOML file or a directory of feed files.

    In a directory each file is one source named after its stem; a name
    starting with `zh-` or `zh_` is Chinese, otherwise the language is
    detected from the items. `base_url` joins relative URLs (the demo's
    local server).
    """
    path = Path(path)
    if path.is_dir():
        return _load_directory(path)
    if not path.exists():
        raise SourcesError(f"sources file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SourcesError(f"{path}: not valid TOML: {exc}") from exc

    entries = data.get("source")
    if not isinstance(entries, list) or not entries:
        raise SourcesError(f"{path}: expected one or more [[source]] tables")

    sources = [_source_from_entry(entry, path, base_url) for entry in entries]
    names = [s.name for s in sources]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SourcesError(f"{path}: duplicate source names: {', '.join(duplicated)}")
    return sources


def _source_from_entry(entry: Any, path: Path, base_url: str | None) -> Source:
    if not isinstance(entry, dict) or "name" not in entry or "url" not in entry:
        raise SourcesError(f"{path}: every [[source]] needs `name` and `url`")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise SourcesError(
            f"{path}: source {entry['name']!r} has unknown keys: {sorted(unknown)}"
        )
    _check_values(entry, path)
    url = str(entry["url"])
    if "://" not in url:
        if base_url:
            url = base_url.rstrip("/") + "/" + url.lstrip("/")
        else:
            local = Path(url)
            url = str(local if local.is_absolute() else (path.parent / local).resolve())
    return Source(**{**entry, "url": url})


def _check_values(entry: dict[str, Any], path: Path) -> None:
    """Every value of a [[source]] has the right type and a known meaning."""
    where = f"{path}: source {entry['name']!r}"
    for key, value in entry.items():
        expected = _TYPES[key]
        if not isinstance(value, expected) or (
            bool not in expected and isinstance(value, bool)
        ):
            names = " or ".join(t.__name__ for t in expected)
            raise SourcesError(f"{where}: `{key}` must be {names}, not {value!r}")
    if not entry["name"].strip() or not entry["url"].strip():
        raise SourcesError(f"{where}: `name` and `url` must not be empty")
    if entry.get("lang", "en") not in LANGS:
        raise SourcesError(f"{where}: `lang` must be one of {', '.join(LANGS)}")
    if entry.get("ownership", "unknown") not in _OWNERSHIP:
        raise SourcesError(
            f"{where}: `ownership` must be one of {', '.join(sorted(_OWNERSHIP))}"
        )
    if entry.get("max_age_hours", 1) <= 0 or entry.get("weight", 1) < 0:
        raise SourcesError(f"{where}: `max_age_hours` and `weight` must be positive")
    timezone = entry.get("timezone", "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SourcesError(
            f"{where}: unknown `timezone` {timezone!r} (use an IANA name such as "
            "Asia/Shanghai)"
        ) from exc


def _load_directory(directory: Path) -> list[Source]:
    files = sorted(
        p
        for p in directory.iterdir()
        if p.is_file()
        and p.suffix.lower() in FEED_SUFFIXES
        and not p.name.startswith(".")
    )
    if not files:
        raise SourcesError(
            f"{directory}: no feed files ({', '.join(sorted(FEED_SUFFIXES))})"
        )
    sources = []
    for file in files:
        stem = file.stem
        lang = "zh" if stem.lower().startswith(("zh-", "zh_")) else "auto"
        sources.append(Source(name=stem, url=str(file.resolve()), lang=lang))
    return sources
