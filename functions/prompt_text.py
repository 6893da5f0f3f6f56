"""Versioned prompt texts from `prompts/<name>.v<N>.md`.

A file starts with `version: N`, then `--- system ---` and the system text,
then `--- user ---` and the user template with `{placeholders}`. The
stable text comes first in both, so providers' prefix caches are hit.
This reader follows the same format as the LLM layer's `infra.prompts`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"

_FILE_NAME = re.compile(r"^(?P<name>[a-z0-9_-]+)\.v(?P<version>\d+)\.md$")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class PromptError(ValueError):
    """A prompt file is missing or not in the expected format."""


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    system: str
    user_template: str

    @property
    def tag(self) -> str:
        """What is recorded with every output: `summarize.v1`."""
        return f"{self.name}.v{self.version}"

    def render(self, **values: str) -> str:
        """Fill the user template; only known placeholders are replaced."""
        missing = set(_PLACEHOLDER.findall(self.user_template)) - set(values)
        if missing:
            raise PromptError(f"{self.tag}: no value for {sorted(missing)}")
        # One pass, so braces inside the values are never read as placeholders.
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.user_template)


@lru_cache(maxsize=32)
def load_prompt(name: str, directory: Path = PROMPTS_DIR) -> Prompt:
    """The highest version of prompt `name`."""
    versions = [
        (int(m.group("version")), path)
        for path in directory.glob(f"{name}.v*.md")
        if (m := _FILE_NAME.match(path.name)) and m.group("name") == name
    ]
    if not versions:
        raise PromptError(f"no prompt {name!r} in {directory}")
    version, path = max(versions)
    return _parse(name, version, path.read_text(encoding="utf-8"))


def _parse(name: str, version: int, text: str) -> Prompt:
    match = re.match(
        r"version:\s*(\d+)\s*\n--- system ---\n(.*?)\n--- user ---\n(.*)\Z",
        text,
        re.DOTALL,
    )
    if match is None:
        raise PromptError(f"{name}.v{version}: expected version, system and user parts")
    if int(match.group(1)) != version:
        raise PromptError(f"{name}.v{version}: file says version {match.group(1)}")
    return Prompt(
        name=name,
        version=version,
        system=match.group(2).strip(),
        user_template=match.group(3).strip() + "\n",
    )
