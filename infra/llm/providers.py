"""The three vendors behind one small interface: send messages, get text and usage.

DeepSeek and OpenAI speak the chat completions API through the openai SDK;
Qwen goes through the dashscope SDK's native generation API. Each provider
asks for a JSON object with reasoning turned off, and makes exactly one
HTTP request per call: the SDKs' own retries are off, because the chain
retries with tenacity and retries must not multiply.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import aiohttp
import openai
from dashscope import AioGeneration
from dashscope.api_entities.aio_session import close_shared_aio_session
from dashscope.common.error import (
    DashScopeException,
    ServiceUnavailableError,
    TimeoutException,
)
from openai.types.chat import ChatCompletion

from infra.llm.errors import (
    MalformedResponse,
    ModerationRefused,
    ProviderError,
    is_refusal_text,
    parse_retry_after,
)

_LOGGER = logging.getLogger(__name__)


class _DropSdkFailureDump(logging.Filter):
    """Drop the dashscope SDK's own traceback for every failed request.

    The SDK logs each failure (a timeout included) at ERROR with its
    traceback, which error trackers turn into events; the chain already
    logs one line per failure and decides whether it matters.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Request failed"


logging.getLogger("dashscope").addFilter(_DropSdkFailureDump())

Message = dict[str, str]


@dataclass
class Usage:
    """Tokens of one call; prompt tokens the vendor did not report as cached miss."""

    prompt_tokens: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Completion:
    text: str
    finish_reason: str
    model: str
    usage: Usage = field(default_factory=Usage)


class Provider(Protocol):
    name: str
    model: str
    cheap_model: str

    async def complete(
        self, *, model: str, messages: list[Message], max_tokens: int
    ) -> Completion: ...

    async def aclose(self) -> None: ...


class OpenAICompatProvider:
    """DeepSeek or OpenAI through `openai.AsyncOpenAI`."""

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        base_url: str,
        model: str,
        cheap_model: str = "",
        timeout_s: float,
        extra_body: dict[str, Any] | None = None,
        reasoning_effort: str = "",
        max_tokens_param: str = "max_tokens",
    ) -> None:
        self.name = name
        self.model = model
        self.cheap_model = cheap_model or model
        self._extra_body = extra_body or {}
        self._reasoning_effort = reasoning_effort
        self._max_tokens_param = max_tokens_param
        self._api_key = api_key
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._client: openai.AsyncOpenAI | None = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        """Made on first use: building one costs tens of ms (TLS setup)."""
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self._base_url,
                timeout=openai.Timeout(
                    self._timeout_s, connect=min(self._timeout_s, 10.0)
                ),
                max_retries=0,
            )
        return self._client

    async def complete(
        self, *, model: str, messages: list[Message], max_tokens: int
    ) -> Completion:
        completion_limit = self._max_tokens_param == "max_completion_tokens"
        try:
            response = await self.client.chat.completions.create(
                model=model,
                messages=cast(Any, messages),
                response_format={"type": "json_object"},
                max_tokens=openai.omit if completion_limit else max_tokens,
                max_completion_tokens=max_tokens if completion_limit else openai.omit,
                reasoning_effort=cast(Any, self._reasoning_effort or openai.omit),
                extra_body=self._extra_body or None,
            )
        except openai.BadRequestError as exc:
            if is_refusal_text(str(exc)):
                raise ModerationRefused(self.name, _error_message(exc)) from exc
            raise
        except json.JSONDecodeError as exc:
            # A body of keep-alive blank lines and nothing else.
            raise MalformedResponse(self.name, "body is not JSON") from exc

        if not isinstance(response, ChatCompletion) or not response.choices:
            raise MalformedResponse(self.name, "no completion in the response body")
        choice = response.choices[0]
        return Completion(
            text=choice.message.content or "",
            finish_reason=str(choice.finish_reason or ""),
            model=response.model or model,
            usage=_openai_usage(response),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("detail"):
            return str(body["detail"])
    return exc.message


def _openai_usage(response: ChatCompletion) -> Usage:
    usage = response.usage
    if usage is None:
        return Usage()
    extra = usage.model_extra or {}
    prompt = usage.prompt_tokens or 0
    if "prompt_cache_hit_tokens" in extra:  # DeepSeek's own fields
        hit = int(extra.get("prompt_cache_hit_tokens") or 0)
        miss = int(extra.get("prompt_cache_miss_tokens") or prompt - hit)
    else:
        details = usage.prompt_tokens_details
        hit = int(details.cached_tokens or 0) if details else 0
        miss = prompt - hit
    completion_details = usage.completion_tokens_details
    reasoning = completion_details.reasoning_tokens if completion_details else 0
    return Usage(
        prompt_tokens=prompt,
        cache_hit_tokens=hit,
        cache_miss_tokens=max(0, miss),
        completion_tokens=usage.completion_tokens or 0,
        reasoning_tokens=reasoning or 0,
    )


class DashScopeProvider:
    """Qwen through the dashscope SDK's native generation API (`AioGeneration`)."""

    name = "qwen"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        model: str,
        cheap_model: str = "",
        timeout_s: float,
    ) -> None:
        self.model = model
        self.cheap_model = cheap_model or model
        self._api_key = api_key
        # Passed per call rather than set on the `dashscope` module, so two
        # chains (or a test and a bench) never share a global endpoint.
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s

    async def complete(
        self, *, model: str, messages: list[Message], max_tokens: int
    ) -> Completion:
        try:
            response: Any = await AioGeneration.call(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                api_key=self._api_key,
                result_format="message",
                max_tokens=max_tokens,
                enable_thinking=False,
                response_format={"type": "json_object"},
                base_address=self._base_url,
                request_timeout=self._timeout_s,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError):
            raise
        except (ServiceUnavailableError, TimeoutException) as exc:
            raise ProviderError(self.name, str(exc), status=503) from exc
        except DashScopeException as exc:
            raise ProviderError(
                self.name, str(exc), status=400, code=type(exc).__name__
            ) from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # The SDK reads a blank or non-JSON 200 body as None and trips on it.
            raise MalformedResponse(self.name, "body is not a generation") from exc

        status = int(response.status_code)
        if status != 200:
            code = str(response.code or "")
            message = str(response.message or "")
            if is_refusal_text(code) or is_refusal_text(message):
                raise ModerationRefused(self.name, message or code)
            raise ProviderError(
                self.name,
                message,
                status=status,
                code=code,
                retry_after=parse_retry_after(response.headers or {}),
            )
        return _dashscope_completion(response, model)

    async def aclose(self) -> None:
        await close_shared_aio_session()


def _dashscope_completion(response: Any, model: str) -> Completion:
    output = response.output or {}
    choices = output.get("choices") or []
    if choices:
        choice = choices[0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        finish = choice.get("finish_reason") or ""
    elif output.get("text") is not None:
        text = output["text"]
        finish = output.get("finish_reason") or ""
    else:
        raise MalformedResponse("qwen", "no choices in the generation output")
    if isinstance(text, list):  # multimodal-style content parts
        text = "".join(str(part.get("text", "")) for part in text)

    usage = response.usage or {}
    prompt = int(usage.get("input_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    hit = int(details.get("cached_tokens") or 0)
    output_details = usage.get("output_tokens_details") or {}
    return Completion(
        text=str(text),
        finish_reason=str(finish),
        model=model,
        usage=Usage(
            prompt_tokens=prompt,
            cache_hit_tokens=hit,
            cache_miss_tokens=max(0, prompt - hit),
            completion_tokens=int(usage.get("output_tokens") or 0),
            reasoning_tokens=int(output_details.get("reasoning_tokens") or 0),
        ),
    )
