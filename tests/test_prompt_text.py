"""Prompt files: format, versions, and the stable part first (issue 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.chat import article_block
from functions.prompt_text import PromptError, load_prompt, prompt_tag
from functions.topics import TOPIC_KEYWORDS
from tests.editorial_fakes import trade_items


@pytest.mark.parametrize("name", ["summarize", "factcheck", "opening"])
def test_shipped_prompts_load(name: str) -> None:
    prompt = load_prompt(name)

    assert prompt_tag(prompt) == f"{name}.v1"
    assert prompt.system and "{{" not in prompt.system
    assert "never" in prompt.system


def test_summarize_prompt_offers_exactly_the_topic_vocabulary() -> None:
    system = load_prompt("summarize").system

    listed = system.split("one to three from this list only: ", 1)[1].split(".\n")[0]

    assert [t.strip() for t in listed.split(",")] == list(TOPIC_KEYWORDS)


def test_render_needs_every_placeholder_and_keeps_braces_in_values() -> None:
    prompt = load_prompt("factcheck")

    text = prompt.render(articles="{sentences} {{sentences}}", sentences="1. x")

    assert text.startswith("{sentences} {{sentences}}")
    with pytest.raises(PromptError, match="missing"):
        prompt.render(articles="a")
    with pytest.raises(PromptError, match="unexpected"):
        prompt.render(articles="a", sentences="b", extra="c")


def test_newest_version_wins_and_bad_files_are_refused(tmp_path: Path) -> None:
    body = "note\n<!-- system -->\nsys {n}\n<!-- user -->\nuser {{x}}\n"
    (tmp_path / "demo.v1.md").write_text(body.replace("{n}", "1"), encoding="utf-8")
    (tmp_path / "demo.v2.md").write_text(body.replace("{n}", "2"), encoding="utf-8")
    (tmp_path / "broken.v1.md").write_text("no markers", encoding="utf-8")

    demo = load_prompt("demo", tmp_path)

    assert (demo.version, demo.system) == ("v2", "sys 2")
    with pytest.raises(PromptError):
        load_prompt("broken", tmp_path)
    with pytest.raises(PromptError):
        load_prompt("absent", tmp_path)


def test_stable_text_comes_first_for_the_prefix_cache() -> None:
    """Two English stories share the user prompt's opening; a retry shares the
    whole first draft's prompt up to its notes."""
    prompt = load_prompt("summarize")
    values = dict(language="English", headline_limit="12 words", max_sentences="3")
    values["max_chars"] = "480"
    block = article_block(trade_items()).text

    first = prompt.render(**values, articles=block, notes="")
    retry = prompt.render(**values, articles=block, notes="Leave out: x")
    other = prompt.render(**values, articles="<article>…</article>", notes="")

    assert retry.startswith(first.rstrip())
    shared = len(first) - len(block) - 2
    assert first[:shared] == other[:shared]
