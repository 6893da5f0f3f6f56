"""JSON out of a model's reply, validated against the caller's pydantic model.

Models asked for JSON still wrap it in code fences, open with a sentence,
stop at the token limit or answer with nothing. Each case becomes a
`BadOutput` with a `kind`, so the chain can ask once for a repair (with the
validation errors, or with more room for a cut reply) before failing over.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from infra.llm.errors import BadOutput, MalformedResponse, ModerationRefused
from infra.llm.providers import Completion, Message

T = TypeVar("T", bound=BaseModel)

_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()


@functools.lru_cache(maxsize=64)
def schema_instruction(schema: type[BaseModel]) -> str:
    """The stable tail of a system prompt that asks for one JSON object."""
    spec = json.dumps(schema.model_json_schema(), ensure_ascii=False, sort_keys=True)
    return (
        "Reply with one JSON object and nothing else: no prose, no code fences. "
        f"It must validate against this JSON Schema:\n{spec}"
    )


def parse_completion(completion: Completion, schema: type[T], provider: str) -> T:
    """Validate a reply, or raise `BadOutput` saying what was wrong with it."""
    text = completion.text.strip()
    finish = completion.finish_reason.lower()

    if finish == "content_filter":
        raise ModerationRefused(provider, "output stopped by the content filter")
    if finish == "insufficient_system_resource":
        # DeepSeek stopped for lack of capacity: transient, not the model's fault.
        raise MalformedResponse(provider, "answer cut: vendor out of capacity")
    if not text:
        kind = "length" if finish == "length" else "empty"
        raise BadOutput(provider, f"empty reply (finish reason {finish!r})", kind=kind)

    data = extract_json(text)
    if data is None:
        kind = "length" if finish == "length" else "not_json"
        raise BadOutput(provider, "reply is not a JSON object", kind=kind, text=text)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in exc.errors()[:8]
        )
        raise BadOutput(provider, errors, kind="invalid", text=text) from exc


def extract_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text`: bare, fenced, or inside prose."""
    text = text.strip().lstrip("\ufeff")
    candidates = [text]
    candidates += [m.group(1).strip() for m in _FENCE_RE.finditer(text)]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value

    # Prose around the object: try each opening brace until one decodes.
    for match in re.finditer(r"\{", text):
        try:
            value, _ = _DECODER.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def repair_messages(messages: list[Message], error: BadOutput) -> list[Message]:
    """The same conversation plus one request to fix the reply."""
    if error.kind in ("empty", "length"):
        note = (
            "Your previous reply was empty or cut off. Reply again with the "
            "complete JSON object only, and keep every text field short."
        )
        return [*messages, {"role": "user", "content": note}]
    note = (
        "Your previous reply could not be used: "
        f"{error.detail}. Reply again with the corrected JSON object only."
    )
    return [
        *messages,
        {"role": "assistant", "content": error.text[:4000]},
        {"role": "user", "content": note},
    ]
