"""The Telegram webhook as an ASGI app, for Modal's `@modal.asgi_app()`.

Each request is checked before anything is parsed: the secret token that
`setWebhook` registered must come back in `X-Telegram-Bot-Api-Secret-Token`
(no secret configured means every request is refused). Telegram re-sends
updates it thinks failed, so each `update_id` is handled once, recorded in
the store so that every container sees it. The answer goes back at once and
the update is handled after it, so Telegram never waits on a digest.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from telegram import Update
from telegram.ext import Application

from bot.handlers import BotDeps, build_application, default_deps
from infra import db
from infra.config import Settings
from infra.store import Store, utcnow

_LOGGER = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY_BYTES = 1_000_000
# Telegram gives up re-sending an update after a day; keep ids a little longer.
SEEN_FOR = timedelta(hours=36)
_PRUNE_EVERY = 500


def first_sighting(store: Store, update_id: int) -> bool:
    """Record an update id; False if it was recorded before."""
    now = utcnow()
    try:
        with store.begin() as conn:
            conn.execute(
                insert(db.bot_updates).values(update_id=update_id, received_at=now)
            )
    except IntegrityError:
        return False
    if update_id % _PRUNE_EVERY == 0:
        with store.begin() as conn:
            conn.execute(
                delete(db.bot_updates).where(
                    db.bot_updates.c.received_at < now - SEEN_FOR
                )
            )
    return True


def _secret_matches(settings: Settings, given: str | None) -> bool:
    if settings.telegram_webhook_secret is None or given is None:
        return False
    expected = settings.telegram_webhook_secret.get_secret_value().encode()
    return hmac.compare_digest(expected, given.encode())


def create_app(settings: Settings, deps: BotDeps | None = None) -> Starlette:
    """The webhook app; the PTB application is built once, when the app starts."""
    deps = deps or default_deps(settings)
    application: Application = build_application(settings, deps)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await application.initialize()
        _LOGGER.info("webhook ready")
        try:
            yield
        finally:
            await application.shutdown()

    async def receive(request: Request) -> Response:
        if not _secret_matches(settings, request.headers.get(SECRET_HEADER)):
            _LOGGER.warning("webhook call refused: missing or wrong secret token")
            return PlainTextResponse("forbidden", status_code=403)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return PlainTextResponse("too large", status_code=413)
        try:
            data = json.loads(body)
            update_id = int(data["update_id"])
        except (ValueError, KeyError, TypeError):
            return PlainTextResponse("not an update", status_code=400)

        if not first_sighting(deps.store, update_id):
            _LOGGER.info("update %d seen before: skipped", update_id)
            return JSONResponse({"ok": True, "duplicate": True})
        try:
            update = Update.de_json(data, application.bot)
        except (ValueError, KeyError, TypeError, AttributeError):
            _LOGGER.warning("update %d could not be decoded", update_id)
            return PlainTextResponse("not an update", status_code=400)
        return JSONResponse(
            {"ok": True}, background=BackgroundTask(_process, application, update)
        )

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, receive, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


async def _process(application: Application, update: Update) -> None:
    """Handle one update; handler errors go to the application's error handler."""
    try:
        await application.process_update(update)
    except Exception:
        _LOGGER.exception("update %d could not be processed", update.update_id)
