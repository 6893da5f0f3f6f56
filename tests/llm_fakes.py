"""Fakes of the model vendors' HTTP APIs, served on 127.0.0.1 for the real SDKs.

One uvicorn server in a thread answers for three vendors under their own
path prefix:

    /deepseek/chat/completions          DeepSeek, for the openai SDK
    /openai/chat/completions            OpenAI, for the openai SDK
    /qwen/api/v1/services/aigc/text-generation/generation
                                        DashScope native, for the dashscope SDK

Each vendor answers from a queue of scripted `Reply`s, else from its
`respond` function, else with `default_content`. Usage is counted the way
the vendor reports it, with a prefix cache: the prompt tokens a request
shares with the longest matching opening of an earlier request are cache
hits, as DeepSeek's disk cache counts them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

KEYS = {
    "deepseek": "sk-fake-deepseek-0001",
    "openai": "sk-fake-openai-0002",
    "qwen": "sk-fake-dashscope-0003",
}
CHARS_PER_TOKEN = 4


@dataclass
class Reply:
    """One scripted answer. `content=None` with status 200 sends an empty message."""

    content: str | None = '{"ok": true}'
    status: int = 200
    finish_reason: str = "stop"
    error: dict[str, Any] | None = None  # the vendor's error body
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the answer starts
    keepalive_lines: int = 0  # blank lines sent before the body
    raw_body: bytes | None = None  # sent as is, as application/json
    completion_tokens: int | None = None
    reasoning_tokens: int = 0

    @staticmethod
    def refusal(vendor: str) -> Reply:
        if vendor == "qwen":
            return Reply(
                status=400,
                error={
                    "code": "DataInspectionFailed",
                    "message": "Input data may contain inappropriate content.",
                },
            )
        return Reply(
            status=400,
            error={
                "error": {
                    "message": "Content Exists Risk",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_request_error",
                }
            },
        )

    @staticmethod
    def failure(
        vendor: str, status: int, message: str, delay: float = 0.0, **headers: str
    ) -> Reply:
        if vendor == "qwen":
            code = {429: "Throttling.RateQuota", 400: "InvalidParameter"}.get(
                status, "InternalError"
            )
            body: dict[str, Any] = {"code": code, "message": message}
        else:
            body = {"error": {"message": message, "type": "api_error", "code": None}}
        return Reply(status=status, error=body, headers=dict(headers), delay=delay)


class FakeVendor:
    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: deque[Reply] = deque()
        self.respond: Callable[[dict[str, Any]], Reply] | None = None
        self.default_content = '{"ok": true}'
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._prompts: list[str] = []
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.queue.clear()
            self.respond = None
            self.default_content = '{"ok": true}'
            self.requests.clear()
            self.headers.clear()
            self._prompts.clear()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.queue.extend(replies)

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self.queue:
                return self.queue.popleft()
        if self.respond is not None:
            return self.respond(body)
        return Reply(content=self.default_content)

    def _cached_chars(self, prompt: str) -> int:
        """Longest opening this prompt shares with any earlier one."""
        with self._lock:
            best = 0
            for earlier in self._prompts:
                best = max(best, _common_prefix(earlier, prompt))
            self._prompts.append(prompt)
        return best

    def usage(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        messages = body.get("messages") or body.get("input", {}).get("messages", [])
        prompt = "".join(f"{m['role']}\n{m['content']}\n" for m in messages)
        prompt_tokens = -(-len(prompt) // CHARS_PER_TOKEN)
        hit = min(prompt_tokens, self._cached_chars(prompt) // CHARS_PER_TOKEN)
        completion = reply.completion_tokens
        if completion is None:
            completion = -(-len(reply.content or "") // CHARS_PER_TOKEN)
        completion += reply.reasoning_tokens
        if self.name == "qwen":
            return {
                "input_tokens": prompt_tokens,
                "output_tokens": completion,
                "total_tokens": prompt_tokens + completion,
                "prompt_tokens_details": {"cached_tokens": hit},
            }
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        }
        if self.name == "deepseek":
            usage["prompt_cache_hit_tokens"] = hit
            usage["prompt_cache_miss_tokens"] = prompt_tokens - hit
        else:
            usage["prompt_tokens_details"] = {"cached_tokens": hit}
        return usage


class FakeLLMServer:
    """The three fake vendors on one loopback port."""

    def __init__(self) -> None:
        self.vendors = {name: FakeVendor(name) for name in KEYS}
        self.app = Starlette(
            routes=[
                Route("/{vendor}/chat/completions", self._chat, methods=["POST"]),
                Route(
                    "/{vendor}/api/v1/services/aigc/text-generation/generation",
                    self._generation,
                    methods=["POST"],
                ),
            ]
        )
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __getitem__(self, name: str) -> FakeVendor:
        return self.vendors[name]

    def base_url(self, vendor: str) -> str:
        root = f"http://127.0.0.1:{self.port}/{vendor}"
        return f"{root}/api/v1" if vendor == "qwen" else root

    def env(self) -> dict[str, str]:
        """Settings aliases that aim every vendor SDK at this server."""
        return {
            "DEEPSEEK_API_KEY": KEYS["deepseek"],
            "DEEPSEEK_BASE_URL": self.base_url("deepseek"),
            "DASHSCOPE_API_KEY": KEYS["qwen"],
            "DASHSCOPE_HTTP_BASE_URL": self.base_url("qwen"),
            "OPENAI_API_KEY": KEYS["openai"],
            "OPENAI_BASE_URL": self.base_url("openai"),
        }

    def reset(self) -> None:
        for vendor in self.vendors.values():
            vendor.reset()

    def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="error",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake LLM server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    # handlers ------------------------------------------------------------------

    async def _authorized(self, request: Request, vendor: str) -> bool:
        return request.headers.get("authorization") == f"Bearer {KEYS[vendor]}"

    async def _chat(self, request: Request) -> Response:
        name = request.path_params["vendor"]
        vendor = self.vendors[name]
        body = await request.json()
        vendor.requests.append(body)
        vendor.headers.append(dict(request.headers))
        if not await self._authorized(request, name):
            return JSONResponse(
                {
                    "error": {
                        "message": "Authentication Fails",
                        "type": "authentication_error",
                    }
                },
                status_code=401,
            )
        reply = vendor._next(body)
        if reply.status != 200:
            return await _answer(reply, reply.error or {}, reply.status)

        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": message, "finish_reason": reply.finish_reason}
            ],
            "usage": vendor.usage(body, reply),
        }
        return await _answer(reply, payload, 200)

    async def _generation(self, request: Request) -> Response:
        vendor = self.vendors["qwen"]
        body = await request.json()
        vendor.requests.append(body)
        vendor.headers.append(dict(request.headers))
        request_id = str(uuid.uuid4())
        if not await self._authorized(request, "qwen"):
            return JSONResponse(
                {
                    "code": "InvalidApiKey",
                    "message": "Invalid API-key provided.",
                    "request_id": request_id,
                },
                status_code=401,
            )
        reply = vendor._next(body)
        if reply.status != 200:
            return await _answer(
                reply, {**(reply.error or {}), "request_id": request_id}, reply.status
            )
        payload = {
            "output": {
                "choices": [
                    {
                        "finish_reason": reply.finish_reason,
                        "message": {
                            "role": "assistant",
                            "content": reply.content or "",
                        },
                    }
                ]
            },
            "usage": vendor.usage(body, reply),
            "request_id": request_id,
        }
        return await _answer(reply, payload, 200)


def _common_prefix(a: str, b: str) -> int:
    """Length of the opening two strings share (bisected: end-to-end runs send
    hundreds of long prompts, too many to compare a character at a time)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


async def _answer(reply: Reply, payload: dict[str, Any], status: int) -> Response:
    if reply.delay:
        await asyncio.sleep(reply.delay)
    body = (
        reply.raw_body if reply.raw_body is not None else json.dumps(payload).encode()
    )
    if not reply.keepalive_lines:
        return Response(
            body,
            status_code=status,
            headers=reply.headers,
            media_type="application/json",
        )

    async def stream() -> AsyncIterator[bytes]:
        # DeepSeek keeps a slow non-streaming request open with blank lines.
        for _ in range(reply.keepalive_lines):
            yield b"\n"
            await asyncio.sleep(0.005)
        yield body

    return StreamingResponse(
        stream(),
        status_code=status,
        headers=reply.headers,
        media_type="application/json",
    )
