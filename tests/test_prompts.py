"""Versioned prompt files: naming, sections, placeholders."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.prompts import PromptError, available_versions, load_prompt

SUMMARIZE_V1 = """\
# summarize, version 1
A note for people: not sent.

<!-- system -->
You summarize news. Reply with JSON like {"headline": "..."}.

<!-- user -->
Language: {{lang}}
Articles cost $5 to read:
{{ articles }}
"""


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    directory = tmp_path / "prompts"
    directory.mkdir()
    (directory / "summarize.v1.md").write_text(SUMMARIZE_V1, encoding="utf-8")
    (directory / "summarize.v2.md").write_text(
        SUMMARIZE_V1.replace("You summarize", "You briefly summarize"), encoding="utf-8"
    )
    (directory / "summarize.v10.md").write_text(
        SUMMARIZE_V1.replace("You summarize", "Tenth"), encoding="utf-8"
    )
    (directory / "factcheck.v1.md").write_text(SUMMARIZE_V1, encoding="utf-8")
    return directory


def test_the_newest_version_is_loaded_by_number_not_by_spelling(prompts: Path) -> None:
    prompt = load_prompt("summarize", directory=prompts)

    assert available_versions("summarize", prompts) == ["v1", "v2", "v10"]
    assert prompt.version == "v10"
    assert prompt.system.startswith("Tenth")


def test_a_named_version_is_loaded_with_its_sections(prompts: Path) -> None:
    prompt = load_prompt("summarize", "v1", directory=prompts)

    assert prompt.name == "summarize"
    assert prompt.version == "v1"
    assert prompt.system == (
        'You summarize news. Reply with JSON like {"headline": "..."}.'
    )
    assert "note for people" not in prompt.system + prompt.user_template
    assert prompt.variables == {"lang", "articles"}


def test_render_fills_placeholders_and_leaves_braces_and_dollars(prompts: Path) -> None:
    prompt = load_prompt("summarize", "v1", directory=prompts)

    text = prompt.render(lang="zh", articles='[1] {"title": "A"} costs $3')

    assert text == (
        'Language: zh\nArticles cost $5 to read:\n[1] {"title": "A"} costs $3'
    )


def test_render_refuses_missing_and_unexpected_values(prompts: Path) -> None:
    prompt = load_prompt("summarize", "v1", directory=prompts)

    with pytest.raises(PromptError, match="missing"):
        prompt.render(lang="en")
    with pytest.raises(PromptError, match="unexpected"):
        prompt.render(lang="en", articles="x", extra="y")


def test_the_default_directory_comes_from_settings(
    prompts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.config import get_settings

    monkeypatch.setenv("DIGEST_PROMPTS", str(prompts))
    get_settings.cache_clear()

    assert load_prompt("factcheck").version == "v1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("<!-- system -->\nS\n", "needs", id="no-user"),
        pytest.param("<!-- user -->\nU\n", "needs", id="no-system"),
        pytest.param(
            "<!-- system -->\n\n<!-- user -->\nU\n", "empty", id="empty-system"
        ),
        pytest.param(
            "<!-- system -->\nS\n<!-- user -->\nU\n<!-- user -->\nV\n",
            "more than one",
            id="two-users",
        ),
    ],
)
def test_malformed_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.v1.md").write_text(text, encoding="utf-8")

    with pytest.raises(PromptError, match=message):
        load_prompt("bad", directory=tmp_path)


def test_missing_prompts_are_named_in_the_error(prompts: Path) -> None:
    with pytest.raises(PromptError, match="translate"):
        load_prompt("translate", directory=prompts)
    with pytest.raises(PromptError, match="summarize.v3.md"):
        load_prompt("summarize", "v3", directory=prompts)
