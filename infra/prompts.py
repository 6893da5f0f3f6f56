"""Versioned prompt texts, read from `prompts/`.

One file per prompt and version, named `<name>.v<N>.md`, for example
`prompts/summarize.v1.md`. A new wording is a new file with the next
number; a released file is never edited, so the version recorded with
every output names the exact words that produced it.

Inside a file, a line `<!-- system -->` starts the system prompt and a
line `<!-- user -->` starts the user template; anything above the first
marker is a note for people and is not sent. Both markers are HTML
comments so the file still reads as plain Markdown.

    # summarize, version 1
    Why this wording: ...

    <!-- system -->
    You write news summaries. Reply with JSON only.

    <!-- user -->
    Articles:
    {{articles}}

The user template holds `{{name}}` placeholders, filled by
`Prompt.render(name=...)`. Braces of JSON examples and dollar signs need
no escaping. Keep the stable text in the system prompt and the variable
text last: DeepSeek's prefix cache only bills the shared opening cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FILE_RE = re.compile(r"^(?P<name>[a-z0-9_-]+)\.v(?P<number>\d+)\.md$")
_MARKER_RE = re.compile(r"^<!--\s*(system|user)\s*-->\s*$", re.MULTILINE)
_PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class PromptError(Exception):
    """A prompt file is missing, misnamed or malformed."""


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    system: str
    user_template: str

    @property
    def variables(self) -> frozenset[str]:
        """The placeholder names the user template expects."""
        return frozenset(_PLACEHOLDER_RE.findall(self.user_template))

    def render(self, **values: object) -> str:
        """Fill the user template; every placeholder must be given, and only those."""
        missing = self.variables - values.keys()
        extra = values.keys() - self.variables
        if missing or extra:
            raise PromptError(
                f"prompt {self.name}.{self.version}: missing {sorted(missing)}, "
                f"unexpected {sorted(extra)}"
            )
        return _PLACEHOLDER_RE.sub(
            lambda m: str(values[m.group(1)]), self.user_template
        )


def _default_dir() -> Path:
    from infra.config import get_settings

    return get_settings().digest_prompts


def available_versions(name: str, directory: Path | None = None) -> list[str]:
    """Versions of one prompt on disk, oldest first (`["v1", "v2"]`)."""
    directory = directory or _default_dir()
    numbers = []
    for path in directory.glob(f"{name}.v*.md"):
        match = _FILE_RE.match(path.name)
        if match and match["name"] == name:
            numbers.append(int(match["number"]))
    return [f"v{n}" for n in sorted(numbers)]


def load_prompt(
    name: str, version: str | None = None, *, directory: Path | None = None
) -> Prompt:
    """Read a prompt; the newest version unless one is named."""
    directory = directory or _default_dir()
    if version is None:
        versions = available_versions(name, directory)
        if not versions:
            raise PromptError(f"no prompt named {name!r} in {directory}")
        version = versions[-1]
    path = directory / f"{name}.{version}.md"
    if not _FILE_RE.match(path.name) or not path.is_file():
        raise PromptError(f"no prompt file {path.name} in {directory}")

    system, user = _split_sections(path.read_text(encoding="utf-8"), path.name)
    return Prompt(name=name, version=version, system=system, user_template=user)


def _split_sections(text: str, filename: str) -> tuple[str, str]:
    parts = _MARKER_RE.split(text.replace("\r\n", "\n"))
    # parts: [preamble, marker, body, marker, body, ...]
    sections: dict[str, str] = {}
    for marker, body in zip(parts[1::2], parts[2::2], strict=True):
        if marker in sections:
            raise PromptError(f"{filename}: more than one <!-- {marker} --> section")
        sections[marker] = body.strip("\n").rstrip()
    if "system" not in sections or "user" not in sections:
        raise PromptError(f"{filename}: needs <!-- system --> and <!-- user --> lines")
    if not sections["system"].strip() or not sections["user"].strip():
        raise PromptError(f"{filename}: empty system or user section")
    return sections["system"], sections["user"]
