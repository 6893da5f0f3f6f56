"""Versioned prompt texts from `prompts/<name>.v<N>.md`.

The format is the LLM layer's (`infra.prompts`): an optional note for
people, then a line `<!-- system -->` and the system prompt, then a line
`<!-- user -->` and the user template with `{{name}}` placeholders. The
stable text comes first, so providers' prefix caches are hit. This small
reader lets the editorial stages load their prompts on their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"

_FILE_NAME = re.compile(r"^(?P<name>[a-z0-9_-]+)\.v(?P<number>\d+)\.md$")
_MARKER = re.compile(r"^<!--\s*(system|user)\s*-->\s*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class PromptError(ValueError):
    """A prompt file is missing or not in the expected format."""


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str  # "v1"
    system: str
    user_template: str

    def render(self, **values: object) -> str:
        """Fill the user template; every placeholder must be given, and only those."""
        expected = set(_PLACEHOLDER.findall(self.user_template))
        if expected != set(values):
            raise PromptError(
                f"prompt {self.name}.{self.version}: missing "
                f"{sorted(expected - set(values))}, unexpected "
                f"{sorted(set(values) - expected)}"
            )
        # One pass, so braces inside the values are never read as placeholders.
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.user_template)


def prompt_tag(prompt: Prompt) -> str:
    """What is recorded with every output: `summarize.v1`."""
    return f"{prompt.name}.{prompt.version}"


@lru_cache(maxsize=32)
def load_prompt(name: str, directory: Path = PROMPTS_DIR) -> Prompt:
    """The newest version of prompt `name`."""
    numbers = [
        int(m["number"])
        for path in directory.glob(f"{name}.v*.md")
        if (m := _FILE_NAME.match(path.name)) and m["name"] == name
    ]
    if not numbers:
        raise PromptError(f"no prompt named {name!r} in {directory}")
    version = f"v{max(numbers)}"
    path = directory / f"{name}.{version}.md"
    parts = _MARKER.split(path.read_text(encoding="utf-8").replace("\r\n", "\n"))
    sections = {
        marker: body.strip("\n").rstrip()
        for marker, body in zip(parts[1::2], parts[2::2], strict=True)
    }
    if not sections.get("system", "").strip() or not sections.get("user", "").strip():
        raise PromptError(f"{path.name}: needs <!-- system --> and <!-- user --> parts")
    return Prompt(name, version, sections["system"], sections["user"])
