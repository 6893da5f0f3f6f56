"""A fake Telegram Bot API on 127.0.0.1 that the real python-telegram-bot talks to.

It keeps to what the Bot API documents and what tests rely on: HTML parse
mode checked strictly, 4096 UTF-16 units per message, 64-byte callback data,
and flood control (a 429 with `retry_after` past `global_rate` messages in
any second, or a second message to one chat within `chat_interval`). Tests
program failures: a blocked chat (403), a bad gateway (502), a flood reply
on every n-th message, or any error for the next matching call.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.telegram_html import parse_html, utf16_len

TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijk"
BOT_USER = {
    "id": 123456789,
    "is_bot": True,
    "first_name": "China to Watch",
    "username": "china_to_watch_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


@dataclass
class SentMessage:
    chat_id: str
    message_id: int
    text: str
    visible: str
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    link_preview_options: dict[str, Any] | None
    at: float


@dataclass
class Failure:
    method: str
    status: int
    description: str
    chat_id: str | None = None
    retry_after: int | None = None
    times: int = 1
    parameters: dict[str, Any] | None = None


@dataclass
class _State:
    messages: list[SentMessage] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    webhook: dict[str, Any] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)
    flood_replies: int = 0
    rate_violations: int = 0
    send_attempts: int = 0


class FakeTelegram:
    """The Bot API for one bot token, served from a thread."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        global_rate: int = 30,
        chat_interval: float = 1.0,
        flood_retry_after: int = 1,
        flood_every: int = 0,
    ) -> None:
        self.token = token
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.reset(
            global_rate=global_rate,
            chat_interval=chat_interval,
            flood_retry_after=flood_retry_after,
            flood_every=flood_every,
        )

    def reset(
        self,
        *,
        global_rate: int = 30,
        chat_interval: float = 1.0,
        flood_retry_after: int = 1,
        flood_every: int = 0,
    ) -> FakeTelegram:
        """Forget everything and take new limits: one server serves many tests."""
        with self._lock:
            self.global_rate = global_rate
            self.chat_interval = chat_interval
            self.flood_retry_after = flood_retry_after
            self.flood_every = flood_every
            self._state = _State()
            self._accepted: deque[float] = deque()
            self._last_by_chat: dict[str, float] = {}
            self._message_ids = itertools.count(1)
            self._update_ids = itertools.count(1000)
        return self

    # lifecycle ---------------------------------------------------------------

    def start(self) -> FakeTelegram:
        app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._handle, methods=["GET", "POST"])
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
            ws="none", http="h11", access_log=False,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake Telegram server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def api_root(self) -> str:
        """What TELEGRAM_API_BASE_URL is set to: PTB appends /bot<token>."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.api_root}/bot"

    # programming it ----------------------------------------------------------

    def fail(
        self,
        method: str,
        status: int,
        description: str,
        *,
        chat_id: str | int | None = None,
        retry_after: int | None = None,
        times: int = 1,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next `times` matching calls with this error."""
        failure = Failure(
            method, status, description,
            None if chat_id is None else str(chat_id), retry_after, times, parameters,
        )  # fmt: skip
        with self._lock:
            self._state.failures.append(failure)

    def block(self, chat_id: str | int) -> None:
        """The user blocked the bot: every send to them is a 403."""
        with self._lock:
            self._state.blocked.add(str(chat_id))

    def push_update(self, update: dict[str, Any]) -> None:
        with self._lock:
            self._state.updates.append(update)

    # reading it --------------------------------------------------------------

    @property
    def messages(self) -> list[SentMessage]:
        with self._lock:
            return list(self._state.messages)

    def messages_to(self, chat_id: str | int) -> list[SentMessage]:
        return [m for m in self.messages if m.chat_id == str(chat_id)]

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [p for m, p in self._state.calls if method is None or m == method]

    @property
    def answers(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._state.answers)

    @property
    def edits(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._state.edits)

    @property
    def commands(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return dict(self._state.commands)

    @property
    def webhook(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._state.webhook)

    @property
    def flood_replies(self) -> int:
        return self._state.flood_replies

    @property
    def rate_violations(self) -> int:
        """429s caused by going over the limits, as opposed to programmed ones."""
        return self._state.rate_violations

    # updates as Telegram sends them -----------------------------------------

    def message_update(
        self, chat_id: int, text: str, *, language_code: str = "en"
    ) -> dict[str, Any]:
        update_id = next(self._update_ids)
        message: dict[str, Any] = {
            "message_id": update_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Reader"},
            "from": _user(chat_id, language_code),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(command)}
            ]
        return {"update_id": update_id, "message": message}

    def callback_update(
        self, chat_id: int, data: str, *, message_id: int = 1, language_code: str = "en"
    ) -> dict[str, Any]:
        update_id = next(self._update_ids)
        return {
            "update_id": update_id,
            "callback_query": {
                "id": f"cq{update_id}",
                "from": _user(chat_id, language_code),
                "chat_instance": f"ci{chat_id}",
                "data": data,
                "message": {
                    "message_id": message_id,
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private"},
                    "from": BOT_USER,
                    "text": "digest",
                },
            },
        }

    # the API -----------------------------------------------------------------

    async def _handle(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.path_params["method"]
        params = await _params(request)
        with self._lock:
            self._state.calls.append((method, params))
            failure = self._take_failure(method, params)
        if failure is not None:
            return _error(
                failure.status,
                failure.description,
                failure.retry_after,
                failure.parameters,
            )
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        if method == "getUpdates":
            return await self._api_getUpdates(params)
        with self._lock:
            return handler(params)

    def _take_failure(self, method: str, params: dict[str, Any]) -> Failure | None:
        for failure in self._state.failures:
            if failure.method != method:
                continue
            if failure.chat_id is not None and failure.chat_id != str(
                params.get("chat_id")
            ):
                continue
            failure.times -= 1
            if failure.times <= 0:
                self._state.failures.remove(failure)
            return failure
        return None

    def _api_getMe(self, params: dict[str, Any]) -> JSONResponse:
        return _ok(BOT_USER)

    def _api_sendMessage(self, params: dict[str, Any]) -> JSONResponse:
        chat_id = str(params.get("chat_id", ""))
        text = str(params.get("text", ""))
        self._state.send_attempts += 1
        if chat_id in self._state.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        if self.flood_every and self._state.send_attempts % self.flood_every == 0:
            self._state.flood_replies += 1
            return _error(
                429, "Too Many Requests: retry after 1", self.flood_retry_after
            )

        now = time.monotonic()
        while self._accepted and self._accepted[0] <= now - 1.0:
            self._accepted.popleft()
        last = self._last_by_chat.get(chat_id)
        if len(self._accepted) >= self.global_rate or (
            last is not None and now - last < self.chat_interval
        ):
            self._state.flood_replies += 1
            self._state.rate_violations += 1
            retry = self.flood_retry_after
            return _error(429, f"Too Many Requests: retry after {retry}", retry)

        parse_mode = params.get("parse_mode")
        try:
            visible = parse_html(text) if parse_mode == "HTML" else text
        except ValueError as exc:
            return _error(400, f"Bad Request: {exc}")
        if not visible.strip():
            return _error(400, "Bad Request: message text is empty")
        if utf16_len(visible) > 4096:
            return _error(400, "Bad Request: message is too long")
        markup = _json(params.get("reply_markup"))
        problem = _check_markup(markup)
        if problem:
            return _error(400, f"Bad Request: {problem}")

        self._accepted.append(now)
        self._last_by_chat[chat_id] = now
        message_id = next(self._message_ids)
        self._state.messages.append(
            SentMessage(
                chat_id=chat_id,
                message_id=message_id,
                text=text,
                visible=visible,
                parse_mode=parse_mode,
                reply_markup=markup,
                link_preview_options=_json(params.get("link_preview_options")),
                at=now,
            )
        )
        return _ok(_message(chat_id, message_id, visible, markup))

    def _api_editMessageText(self, params: dict[str, Any]) -> JSONResponse:
        text = str(params.get("text", ""))
        try:
            visible = parse_html(text) if params.get("parse_mode") == "HTML" else text
        except ValueError as exc:
            return _error(400, f"Bad Request: {exc}")
        markup = _json(params.get("reply_markup"))
        problem = _check_markup(markup)
        if problem:
            return _error(400, f"Bad Request: {problem}")
        edit = {**params, "visible": visible, "reply_markup": markup}
        self._state.edits.append(edit)
        chat_id = str(params.get("chat_id", ""))
        return _ok(_message(chat_id, int(params.get("message_id", 1)), visible, markup))

    def _api_editMessageReplyMarkup(self, params: dict[str, Any]) -> JSONResponse:
        markup = _json(params.get("reply_markup"))
        problem = _check_markup(markup)
        if problem:
            return _error(400, f"Bad Request: {problem}")
        self._state.edits.append({**params, "reply_markup": markup})
        chat_id = str(params.get("chat_id", ""))
        return _ok(_message(chat_id, int(params.get("message_id", 1)), "x", markup))

    def _api_sendChatAction(self, params: dict[str, Any]) -> JSONResponse:
        return _ok(True)

    def _api_answerCallbackQuery(self, params: dict[str, Any]) -> JSONResponse:
        self._state.answers.append(params)
        return _ok(True)

    def _api_setMyCommands(self, params: dict[str, Any]) -> JSONResponse:
        scope = _json(params.get("scope")) or {"type": "default"}
        key = json.dumps(
            {**scope, "language_code": params.get("language_code", "")},
            sort_keys=True,
        )
        self._state.commands[key] = _json(params.get("commands")) or []
        return _ok(True)

    def _api_setWebhook(self, params: dict[str, Any]) -> JSONResponse:
        self._state.webhook = dict(params)
        return _ok(True)

    def _api_deleteWebhook(self, params: dict[str, Any]) -> JSONResponse:
        self._state.webhook = {}
        return _ok(True)

    def _api_getWebhookInfo(self, params: dict[str, Any]) -> JSONResponse:
        url = self._state.webhook.get("url", "")
        return _ok(
            {"url": url, "has_custom_certificate": False, "pending_update_count": 0}
        )

    async def _api_getUpdates(self, params: dict[str, Any]) -> JSONResponse:
        offset = int(params.get("offset") or 0)
        timeout = min(float(params.get("timeout") or 0), 0.5)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if offset:
                    self._state.updates = [
                        u for u in self._state.updates if u["update_id"] >= offset
                    ]
                pending = list(self._state.updates)
            if pending or time.monotonic() >= deadline:
                return _ok(pending)
            await asyncio.sleep(0.02)


def _user(chat_id: int, language_code: str) -> dict[str, Any]:
    return {
        "id": chat_id,
        "is_bot": False,
        "first_name": "Reader",
        "language_code": language_code,
    }


def _message(
    chat_id: str, message_id: int, text: str, markup: dict[str, Any] | None
) -> dict[str, Any]:
    chat: int | str = int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id
    message: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": {"id": chat, "type": "private"},
        "from": BOT_USER,
        "text": text,
    }
    if markup:
        message["reply_markup"] = markup
    return message


def _check_markup(markup: dict[str, Any] | None) -> str | None:
    for row in (markup or {}).get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= 64:
                return "BUTTON_DATA_INVALID"
    return None


def _json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


async def _params(request: Request) -> dict[str, Any]:
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        return json.loads(body or b"{}")
    parsed = parse_qs(body.decode(), keep_blank_values=True)
    params = {key: values[-1] for key, values in parsed.items()}
    params.update(request.query_params)
    return params


def _ok(result: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def _error(
    status: int,
    description: str,
    retry_after: int | None = None,
    parameters: dict[str, Any] | None = None,
) -> JSONResponse:
    payload: dict[str, Any] = {
        "ok": False,
        "error_code": status,
        "description": description,
    }
    extra = dict(parameters or {})
    if retry_after is not None:
        extra["retry_after"] = retry_after
    if extra:
        payload["parameters"] = extra
    return JSONResponse(payload, status_code=status)
