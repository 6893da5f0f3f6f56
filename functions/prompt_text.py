"""The editorial stages' prompts, read once each through `infra.prompts`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from infra.prompts import Prompt, PromptError, load_prompt as _read

__all__ = ["Prompt", "PromptError", "load_prompt", "prompt_tag"]


def prompt_tag(prompt: Prompt) -> str:
    """What is recorded with every output: `summarize.v1`."""
    return f"{prompt.name}.{prompt.version}"


@lru_cache(maxsize=32)
def load_prompt(name: str, directory: Path | None = None) -> Prompt:
    """The newest version of prompt `name` (DIGEST_PROMPTS, else `directory`)."""
    return _read(name, directory=directory)
