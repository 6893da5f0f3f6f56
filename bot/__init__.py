"""Telegram commands, feedback callbacks, rendering, delivery and the webhook."""

import os

# PTB 22 warns on every 429 that `retry_after` will become a timedelta unless
# this opt-in is set; we read both forms (bot.channels.retry_after_seconds).
os.environ.setdefault("PTB_TIMEDELTA", "true")
