"""What the bot says, in English and Chinese, and the topics a reader can pick."""

from __future__ import annotations

# Labels of the canonical topics summaries carry (functions.topics), in the
# order the topic buttons show them.
TOPICS: dict[str, tuple[str, str]] = {
    "politics": ("Politics", "政治"),
    "economy": ("Economy", "经济"),
    "trade": ("Trade", "贸易"),
    "finance": ("Finance & markets", "金融"),
    "property": ("Property", "房地产"),
    "technology": ("Technology", "科技"),
    "diplomacy": ("Foreign affairs", "外交"),
    "military": ("Military", "军事"),
    "taiwan": ("Taiwan", "台湾"),
    "hong kong": ("Hong Kong", "香港"),
    "energy": ("Energy", "能源"),
    "environment": ("Environment", "环境"),
    "health": ("Health", "健康"),
    "society": ("Society", "社会"),
    "law": ("Law & courts", "法治"),
    "science": ("Science & space", "科学与航天"),
    "transport": ("Transport", "交通"),
}

LANGUAGES = {"en": "English", "zh": "中文"}

_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "welcome": (
            "Welcome to <b>China to Watch</b>: the few China stories that matter "
            "to you, from English and Chinese sources, fact-checked.\n\n"
            "Which language should your digest be in?"
        ),
        "welcome_back": "Welcome back! Which language should your digest be in?",
        "pick_topics": (
            "Pick the topics you follow (tap to switch on or off), then Done."
        ),
        "topics_now": "Your topics: {topics}\nTap to switch a topic on or off.",
        "topics_saved": (
            "Saved. Your topics: {topics}\n"
            "Your digest comes daily at {hour:02d}:00 ({tz}); /digest sends it now."
        ),
        "no_topics": "all",
        "done": "Done",
        "muted": "Muted: {topics}",
        "not_subscribed": "You are not subscribed. Send /start to subscribe.",
        "stopped": "You are unsubscribed. Send /start any time to come back.",
        "already_stopped": "You were not subscribed. /start subscribes you.",
        "preparing": "Preparing your digest…",
        "digest_failed": "Sorry, the digest could not be sent. Please try later.",
        "sources_title": "<b>Sources</b> (outlet, ownership, language):",
        "no_sources": "No sources are configured.",
        "help": (
            "<b>China to Watch</b>\n"
            "/digest: your digest now\n"
            "/topics: see and change your topics\n"
            "/sources: where the news comes from\n"
            "/stop: unsubscribe\n"
            "/start: subscribe again or change language\n\n"
            "Under each story: 👍 more like this, 👎 less like this, "
            "🔇 mute its topic, ⚠️ report it as inaccurate."
        ),
        "admin_only": "This command is for admins.",
        "broadcast_usage": "Usage: /broadcast your message",
        "broadcast_started": "Broadcasting to {count} readers…",
        "broadcast_done": "Broadcast finished: {sent} sent, {failed} not delivered.",
        "fb_more": "👍 Noted: more like this.",
        "fb_less": "👎 Noted: less like this.",
        "fb_mute": "🔇 Muted topic: {topic}.",
        "fb_mute_none": "This story has no topic to mute.",
        "fb_report": "⚠️ Thanks: reported to the editors.",
        "fb_again": "Already noted.",
        "fb_expired": "This button is no longer valid.",
        "error": "Sorry, something went wrong. Please try again later.",
        "btn_more": "👍",
        "btn_less": "👎",
        "btn_mute": "🔇 {topic}",
        "btn_report": "⚠️",
    },
    "zh": {
        "welcome": (
            "欢迎使用 <b>China to Watch</b>：从中英文来源中挑出与你相关、"
            "经过核查的中国新闻。\n\n你希望用哪种语言阅读简报？"
        ),
        "welcome_back": "欢迎回来！你希望用哪种语言阅读简报？",
        "pick_topics": "选择你关注的话题（点击开关），然后点“完成”。",
        "topics_now": "你的话题：{topics}\n点击可开关话题。",
        "topics_saved": (
            "已保存。你的话题：{topics}\n"
            "每天 {hour:02d}:00（{tz}）推送简报；发送 /digest 立即获取。"
        ),
        "no_topics": "全部",
        "done": "完成",
        "muted": "已屏蔽：{topics}",
        "not_subscribed": "你尚未订阅。发送 /start 订阅。",
        "stopped": "已退订。随时发送 /start 重新订阅。",
        "already_stopped": "你尚未订阅。发送 /start 订阅。",
        "preparing": "正在准备你的简报……",
        "digest_failed": "抱歉，简报发送失败，请稍后再试。",
        "sources_title": "<b>新闻来源</b>（媒体、性质、语言）：",
        "no_sources": "尚未配置新闻来源。",
        "help": (
            "<b>China to Watch</b>\n"
            "/digest：立即获取简报\n"
            "/topics：查看和修改话题\n"
            "/sources：新闻来源\n"
            "/stop：退订\n"
            "/start：重新订阅或更换语言\n\n"
            "每条新闻下方：👍 多推荐类似内容，👎 少推荐，🔇 屏蔽该话题，⚠️ 报告不准确。"
        ),
        "admin_only": "此命令仅限管理员。",
        "broadcast_usage": "用法：/broadcast 消息内容",
        "broadcast_started": "正在向 {count} 位读者发送……",
        "broadcast_done": "发送完成：成功 {sent}，未送达 {failed}。",
        "fb_more": "👍 已记录：多推荐类似内容。",
        "fb_less": "👎 已记录：少推荐类似内容。",
        "fb_mute": "🔇 已屏蔽话题：{topic}。",
        "fb_mute_none": "这条新闻没有可屏蔽的话题。",
        "fb_report": "⚠️ 谢谢，已报告给编辑。",
        "fb_again": "已记录过了。",
        "fb_expired": "此按钮已失效。",
        "error": "抱歉，出了点问题，请稍后再试。",
        "btn_more": "👍",
        "btn_less": "👎",
        "btn_mute": "🔇 {topic}",
        "btn_report": "⚠️",
    },
}

COMMANDS: dict[str, tuple[str, str]] = {
    "digest": ("Your digest now", "立即获取简报"),
    "topics": ("See and change your topics", "查看和修改话题"),
    "sources": ("Where the news comes from", "新闻来源"),
    "stop": ("Unsubscribe", "退订"),
    "start": ("Subscribe or change language", "订阅或更换语言"),
    "help": ("What this bot does", "使用说明"),
}

ADMIN_COMMANDS: dict[str, str] = {
    "status": "Runs, source health and spend",
    "broadcast": "Send a test message to every reader",
}


def lang_of(code: str | None) -> str:
    """Our language for a Telegram language code: zh for any Chinese, else en."""
    return "zh" if (code or "").lower().startswith("zh") else "en"


def text(lang: str, key: str, **values: object) -> str:
    table = _TEXTS.get(lang, _TEXTS["en"])
    return table.get(key, _TEXTS["en"][key]).format(**values)


def topic_label(key: str, lang: str) -> str:
    """The label of a topic key; an unknown key is shown as it is."""
    labels = TOPICS.get(key)
    if labels is None:
        return key
    return labels[1] if lang == "zh" else labels[0]
