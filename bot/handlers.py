"""Reader and admin commands, and the buttons they tap.

Handlers find everything they need in `BotDeps`, stored in the
application's `bot_data`; the pipeline plugs in its own digest builder,
source list and spend figure there. The same handlers serve the webhook
(production) and long polling (`digest bot`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from telegram import (
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot import feedback, texts
from bot.channels import OutgoingMessage, TelegramChannel, broadcast_messages
from bot.client import api_base_urls, bot_token, make_request
from bot.digests import configured_sources, source_health
from bot.ledger import DeliveryLedger
from bot.limits import RateLimiter, TelegramPacing
from bot.render import escape, ownership_label, split_html
from functions.models import Digest, Source
from infra.config import Settings
from infra.llm.ledger import Ledger
from infra.readers import Reader, get_reader, list_readers, save_reader, set_active
from infra.store import Store, open_store, utcnow

_LOGGER = logging.getLogger(__name__)

DigestBuilder = Callable[[Reader], "Digest | Awaitable[Digest]"]
LANG_PREFIX = "lang:"
TOPIC_PREFIX = "tp:"
TOPICS_DONE = "tp:done"
# Sources failing this many fetches in a row are flagged in /sources and /status.
FAILING_AFTER = 3


@dataclass
class BotDeps:
    """What the handlers use; the pipeline replaces the callables it owns."""

    store: Store
    settings: Settings
    build_digest_for: DigestBuilder
    list_sources: Callable[[], list[Source]]
    month_cost: Callable[[], float | None] = lambda: None
    limiter: RateLimiter = field(default_factory=RateLimiter)

    @property
    def admin_ids(self) -> set[int]:
        return set(self.settings.admin_chat_ids)


def default_deps(settings: Settings, store: Store | None = None) -> BotDeps:
    """Deps that work from stored data alone."""
    store = store or open_store(settings.store_url)

    def sources() -> list[Source]:
        return configured_sources(settings.digest_sources)

    async def digest_for(reader: Reader) -> Digest:
        # The same edited, fact-checked summaries the scheduled run sends
        # (cached per story, so this costs a model call only for a new story).
        from functions.run import digest_for_reader

        return await digest_for_reader(settings, store, reader)

    def month_cost() -> float:
        return Ledger(store).month_to_date(utcnow())

    return BotDeps(
        store=store,
        settings=settings,
        build_digest_for=digest_for,
        list_sources=sources,
        month_cost=month_cost,
    )


def _deps(context: ContextTypes.DEFAULT_TYPE) -> BotDeps:
    deps: BotDeps = context.bot_data["deps"]
    return deps


def _reader(deps: BotDeps, update: Update) -> Reader | None:
    chat = update.effective_chat
    return None if chat is None else get_reader(deps.store, chat_id=chat.id)


def _lang(reader: Reader | None, update: Update) -> str:
    if reader is not None:
        return reader.lang
    user = update.effective_user
    return texts.lang_of(user.language_code if user else None)


async def _reply(update: Update, body: str, **options: Any) -> None:
    message = update.effective_message
    if message is not None:
        await message.reply_text(body, parse_mode=ParseMode.HTML, **options)


# keyboards ------------------------------------------------------------------


def language_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(label, callback_data=f"{LANG_PREFIX}{code}")
                for code, label in texts.LANGUAGES.items()
            ]
        ]
    )


def topics_keyboard(reader: Reader) -> InlineKeyboardMarkup:
    """Topics two to a row, ticked when followed, crossed when muted."""
    buttons = []
    for key in texts.TOPICS:
        label = texts.topic_label(key, reader.lang)
        if key in reader.topics:
            label = f"✓ {label}"
        elif key in reader.muted_topics:
            label = f"🔇 {label}"
        buttons.append(InlineKeyboardButton(label, callback_data=TOPIC_PREFIX + key))
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append(
        [
            InlineKeyboardButton(
                texts.text(reader.lang, "done"), callback_data=TOPICS_DONE
            )
        ]
    )
    return InlineKeyboardMarkup(rows)


def _topic_names(keys: list[str], lang: str) -> str:
    if not keys:
        return texts.text(lang, "no_topics")
    return ", ".join(escape(texts.topic_label(key, lang)) for key in keys)


def _topics_text(reader: Reader) -> str:
    body = texts.text(
        reader.lang, "topics_now", topics=_topic_names(reader.topics, reader.lang)
    )
    if reader.muted_topics:
        muted = _topic_names(reader.muted_topics, reader.lang)
        body += "\n" + texts.text(reader.lang, "muted", topics=muted)
    return body


# reader commands ------------------------------------------------------------


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Subscribe (or come back) and ask for the language."""
    deps = _deps(context)
    chat = update.effective_chat
    if chat is None:
        return
    reader = _reader(deps, update)
    returning = reader is not None
    if reader is None:
        reader = Reader(
            id="",
            chat_id=str(chat.id),
            lang=_lang(None, update),
            digest_size=deps.settings.digest_size,
        )
    reader.active = True
    save_reader(deps.store, reader)
    _LOGGER.info("reader %s subscribed (returning: %s)", reader.id, returning)
    key = "welcome_back" if returning else "welcome"
    await _reply(update, texts.text(reader.lang, key), reply_markup=language_keyboard())


async def choose_language(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A language button: store it, then offer the topics in that language."""
    query = update.callback_query
    deps = _deps(context)
    reader = _reader(deps, update)
    if query is None:
        return
    if reader is None:
        await query.answer(texts.text(_lang(None, update), "not_subscribed"))
        return
    lang = (query.data or "").removeprefix(LANG_PREFIX)
    if lang in texts.LANGUAGES and lang != reader.lang:
        reader.lang = lang
        save_reader(deps.store, reader)
    await query.answer()
    await query.edit_message_text(
        texts.text(reader.lang, "pick_topics"),
        parse_mode=ParseMode.HTML,
        reply_markup=topics_keyboard(reader),
    )


async def toggle_topic(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A topic button switches it on or off; Done confirms the choice."""
    query = update.callback_query
    deps = _deps(context)
    reader = _reader(deps, update)
    if query is None:
        return
    if reader is None:
        await query.answer(texts.text(_lang(None, update), "not_subscribed"))
        return
    if query.data == TOPICS_DONE:
        await query.answer()
        await query.edit_message_text(
            texts.text(
                reader.lang,
                "topics_saved",
                topics=_topic_names(reader.topics, reader.lang),
                hour=reader.delivery_hour,
                tz=escape(reader.timezone),
            ),
            parse_mode=ParseMode.HTML,
        )
        return
    key = (query.data or "").removeprefix(TOPIC_PREFIX)
    if key not in texts.TOPICS:
        await query.answer(texts.text(reader.lang, "fb_expired"))
        return
    if key in reader.topics:
        reader.topics = [t for t in reader.topics if t != key]
    else:
        reader.topics = [*reader.topics, key]
        reader.muted_topics = [t for t in reader.muted_topics if t != key]
    save_reader(deps.store, reader)
    await query.answer()
    await query.edit_message_reply_markup(reply_markup=topics_keyboard(reader))


async def topics(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Show the reader's topics with buttons to change them."""
    deps = _deps(context)
    reader = _reader(deps, update)
    if reader is None or not reader.active:
        await _reply(update, texts.text(_lang(reader, update), "not_subscribed"))
        return
    await _reply(update, _topics_text(reader), reply_markup=topics_keyboard(reader))


async def digest(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Build the reader's current digest and send it through the Telegram channel."""
    deps = _deps(context)
    reader = _reader(deps, update)
    message = update.effective_message
    if reader is None or not reader.active or message is None:
        await _reply(update, texts.text(_lang(reader, update), "not_subscribed"))
        return
    await context.bot.send_chat_action(chat_id=reader.chat_id, action=ChatAction.TYPING)

    current = await _build_digest(deps, reader)
    # Its own edition, so the scheduled one still goes out and a retried update
    # (same message id) does not send twice.
    current = dataclasses.replace(current, edition=f"cmd-{message.message_id}")
    channel = TelegramChannel(context.bot, deps.store, limiter=deps.limiter)
    result = await channel.deliver(reader, current)
    if result.status not in ("sent", "busy"):
        await _reply(update, texts.text(reader.lang, "digest_failed"))


async def _build_digest(deps: BotDeps, reader: Reader) -> Digest:
    """Call the plugged-in builder; a plain function runs in a thread."""
    if inspect.iscoroutinefunction(deps.build_digest_for):
        built: Digest = await deps.build_digest_for(reader)
        return built
    result = await asyncio.to_thread(deps.build_digest_for, reader)
    if inspect.isawaitable(result):
        return await result
    return result


async def sources(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """List the outlets with their ownership, language and health."""
    deps = _deps(context)
    lang = _lang(_reader(deps, update), update)
    configured = deps.list_sources()
    if not configured:
        await _reply(update, texts.text(lang, "no_sources"))
        return
    health = source_health(deps.store)
    lines = [texts.text(lang, "sources_title")]
    for source in configured:
        label = ownership_label(source.ownership, lang) or "?"
        line = (
            f"• {escape(source.display_name)}: {escape(label)}, {escape(source.lang)}"
        )
        state = health.get(source.name, {})
        if (state.get("consecutive_failures") or 0) >= FAILING_AFTER:
            line += " ⚠️"
        lines.append(line)
    for piece in split_html("\n".join(lines), 4000):
        await _reply(update, piece)


async def stop(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Unsubscribe: the reader is kept, inactive, so /start brings them back."""
    deps = _deps(context)
    reader = _reader(deps, update)
    if reader is None or not reader.active:
        await _reply(update, texts.text(_lang(reader, update), "already_stopped"))
        return
    set_active(deps.store, reader.id, False)
    _LOGGER.info("reader %s unsubscribed", reader.id)
    await _reply(update, texts.text(reader.lang, "stopped"))


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """What the bot does and which commands it knows."""
    await _reply(
        update, texts.text(_lang(_reader(_deps(context), update), update), "help")
    )


# admin commands -------------------------------------------------------------


def _is_admin(deps: BotDeps, update: Update) -> bool:
    ids = {update.effective_chat.id if update.effective_chat else None}
    ids.add(update.effective_user.id if update.effective_user else None)
    return bool(ids & deps.admin_ids)


def _stamp(value: Any) -> str:
    return value.strftime("%m-%d %H:%M") if isinstance(value, datetime) else "–"


def status_text(deps: BotDeps) -> str:
    """Readers, last runs, source health, deliveries and spend, for admins."""
    store = deps.store
    readers = list_readers(store)
    active = sum(1 for r in readers if r.active)
    lines = ["<b>Status</b>", f"Readers: {active} active of {len(readers)}", ""]

    runs = store.recent_runs(5)
    lines.append("<b>Last runs</b>")
    for run in runs:
        lines.append(
            f"• {_stamp(run['started_at'])} {escape(run['kind'])}: "
            f"{escape(run['status'])}"
        )
    if not runs:
        lines.append("• none yet")

    states = store.all_source_states()
    failing = [
        s for s in states if (s.get("consecutive_failures") or 0) >= FAILING_AFTER
    ]
    lines += ["", f"<b>Sources</b>: {len(states) - len(failing)} healthy"]
    for state in failing:
        lines.append(
            f"• ⚠️ {escape(state['name'])}: {state['consecutive_failures']} failures, "
            f"{escape(state.get('last_error') or state.get('last_status') or '')}"
        )

    ledger = DeliveryLedger(store)
    edition = ledger.latest_edition()
    if edition is not None:
        counts = ", ".join(
            f"{k} {v}" for k, v in sorted(ledger.counts(edition).items())
        )
        lines += ["", f"<b>Deliveries</b> ({escape(edition)}): {counts}"]

    budget = deps.settings.budget_usd
    spent = deps.month_cost()
    if spent is None:
        lines += ["", f"<b>Spend</b>: not recorded (budget ${budget:.2f})"]
    else:
        share = spent / budget * 100 if budget else 0.0
        lines += [
            "",
            f"<b>Spend</b> this month: ${spent:.2f} of ${budget:.2f} ({share:.0f}%)",
        ]
    return "\n".join(lines)


async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Admin: last runs, source health and month-to-date spend."""
    deps = _deps(context)
    if not _is_admin(deps, update):
        await _reply(
            update, texts.text(_lang(_reader(deps, update), update), "admin_only")
        )
        return
    for piece in split_html(status_text(deps), 4000):
        await _reply(update, piece)


async def broadcast_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Admin: send a test message to every active reader, exactly once each."""
    deps = _deps(context)
    message = update.effective_message
    if message is None:
        return
    if not _is_admin(deps, update):
        await _reply(
            update, texts.text(_lang(_reader(deps, update), update), "admin_only")
        )
        return
    body = (message.text or "").partition(" ")[2].strip()
    if not body:
        await _reply(update, texts.text("en", "broadcast_usage"))
        return
    readers = list_readers(deps.store, active_only=True)
    await _reply(update, texts.text("en", "broadcast_started", count=len(readers)))
    channel = TelegramChannel(context.bot, deps.store, limiter=deps.limiter)
    report = await broadcast_messages(
        channel,
        readers,
        edition=f"bc-{message.message_id}",
        messages=[OutgoingMessage(escape(body))],
    )
    sent = report.statuses.get("sent", 0)
    await _reply(
        update,
        texts.text("en", "broadcast_done", sent=sent, failed=len(readers) - sent),
    )


# feedback -------------------------------------------------------------------


async def feedback_tap(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A tap under a story: store it, acknowledge it, tell admins of reports."""
    query = update.callback_query
    if query is None:
        return
    deps = _deps(context)
    reader = _reader(deps, update)
    lang = _lang(reader, update)
    decoded = feedback.decode(query.data)
    if decoded is None:
        await query.answer(texts.text(lang, "fb_expired"))
        return
    if reader is None:
        await query.answer(texts.text(lang, "not_subscribed"))
        return

    action, story_id = decoded
    outcome = feedback.record(deps.store, reader.id, story_id, action)
    if action == "mute" and not outcome.topic:
        answer = texts.text(lang, "fb_mute_none")
    elif not outcome.new:
        answer = texts.text(lang, "fb_again")
    elif action == "mute":
        answer = texts.text(
            lang, "fb_mute", topic=texts.topic_label(outcome.topic, lang)
        )
    else:
        answer = texts.text(lang, f"fb_{action}")
    await query.answer(answer)

    if action == "report" and outcome.new:
        await _tell_admins(context, deps, reader, outcome)


async def _tell_admins(
    context: ContextTypes.DEFAULT_TYPE,
    deps: BotDeps,
    reader: Reader,
    outcome: feedback.FeedbackOutcome,
) -> None:
    note = (
        f"⚠️ <b>Inaccuracy report</b>\nStory {escape(outcome.story_id)}: "
        f"{escape(outcome.headline) or '(headline unknown)'}\n"
        f"Reader {escape(reader.id)}; outlets: "
        f"{escape(', '.join(outcome.outlets)) or '?'}"
    )
    for admin in sorted(deps.admin_ids):
        try:
            await context.bot.send_message(admin, note, parse_mode=ParseMode.HTML)
        except Exception:
            _LOGGER.warning("could not pass a report to admin chat", exc_info=True)


# wiring ---------------------------------------------------------------------


async def stale_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A button we no longer know: answer it, so the client stops waiting."""
    if update.callback_query is not None:
        lang = _lang(_reader(_deps(context), update), update)
        await update.callback_query.answer(texts.text(lang, "fb_expired"))


async def unknown(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await help_command(update, context)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure first, then tell the reader something went wrong."""
    _LOGGER.error("handler failed", exc_info=context.error)
    if isinstance(update, Update) and update.effective_message is not None:
        try:
            lang = texts.lang_of(
                update.effective_user.language_code if update.effective_user else None
            )
            await update.effective_message.reply_text(texts.text(lang, "error"))
        except Exception:
            _LOGGER.warning(
                "could not tell the reader about the failure", exc_info=True
            )


def register_handlers(application: Application, deps: BotDeps) -> None:
    application.bot_data["deps"] = deps
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CommandHandler("topics", topics))
    application.add_handler(CommandHandler("digest", digest))
    application.add_handler(CommandHandler("sources", sources))
    application.add_handler(CommandHandler("stop", stop))
    application.add_handler(CommandHandler("help", help_command))
    application.add_handler(CommandHandler("status", status))
    application.add_handler(CommandHandler("broadcast", broadcast_command))
    application.add_handler(CallbackQueryHandler(feedback_tap, pattern=r"^fb:"))
    application.add_handler(CallbackQueryHandler(choose_language, pattern=r"^lang:"))
    application.add_handler(CallbackQueryHandler(toggle_topic, pattern=r"^tp:"))
    application.add_handler(CallbackQueryHandler(stale_button))
    application.add_handler(MessageHandler(filters.COMMAND, unknown))
    application.add_error_handler(on_error)


def build_application(
    settings: Settings, deps: BotDeps | None = None, *, polling: bool = False
) -> Application:
    """The PTB application with every handler; no updater unless polling."""
    deps = deps or default_deps(settings)
    base_url, base_file_url = api_base_urls(settings.telegram_api_base_url)
    builder = (
        ApplicationBuilder()
        .token(bot_token(settings))
        .base_url(base_url)
        .base_file_url(base_file_url)
        .request(make_request())
        .rate_limiter(TelegramPacing(deps.limiter))
    )
    if polling:
        builder = builder.get_updates_request(make_request(pool_size=1)).post_init(
            _post_init
        )
    else:
        builder = builder.updater(None)
    application = builder.build()
    register_handlers(application, deps)
    return application


async def _post_init(application: Application) -> None:
    await set_commands(application.bot, application.bot_data["deps"].admin_ids)


async def set_commands(bot: Any, admin_ids: set[int]) -> None:
    """Register the command menu: English, Chinese, and admin chats' extra commands."""
    english = [BotCommand(name, en) for name, (en, _zh) in texts.COMMANDS.items()]
    chinese = [BotCommand(name, zh) for name, (_en, zh) in texts.COMMANDS.items()]
    await bot.set_my_commands(english, scope=BotCommandScopeDefault())
    await bot.set_my_commands(
        chinese, scope=BotCommandScopeDefault(), language_code="zh"
    )
    admin = english + [BotCommand(n, d) for n, d in texts.ADMIN_COMMANDS.items()]
    for chat_id in sorted(admin_ids):
        await bot.set_my_commands(admin, scope=BotCommandScopeChat(chat_id))
    _LOGGER.info("registered bot commands (%d admin chats)", len(admin_ids))
