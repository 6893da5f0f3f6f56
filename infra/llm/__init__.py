"""The LLM layer: DeepSeek, Qwen and OpenAI behind one chain.

Nothing else in the product imports a vendor SDK. Callers build one chain
per run and ask it for structured output:

    chain = build_chain(settings, store)
    try:
        result = await chain.complete_json(
            Summary, stage="summarize", system=prompt.system,
            user=prompt.render(articles=text), prompt_version=prompt.version,
        )
    except LLMUnavailable as exc:
        ...  # the extractive path; exc.all_refused says every vendor declined it
    finally:
        await chain.aclose()

`chain.report()` is the part of a run report that says which provider
served each stage, how many fallbacks and refusals there were, and money.
"""

from __future__ import annotations

import logging

from infra.config import Settings
from infra.llm.chain import LLMChain, LLMResult
from infra.llm.errors import LLMError, LLMUnavailable, ModerationRefused
from infra.llm.ledger import Ledger
from infra.llm.prices import PriceTable
from infra.llm.providers import DashScopeProvider, OpenAICompatProvider, Provider
from infra.store import Store

__all__ = [
    "LLMChain",
    "LLMError",
    "LLMResult",
    "LLMUnavailable",
    "ModerationRefused",
    "build_chain",
    "build_providers",
]

_LOGGER = logging.getLogger(__name__)

_ALIASES = {"dashscope": "qwen"}


def build_providers(settings: Settings) -> tuple[list[Provider], dict[str, str]]:
    """The configured providers in `DIGEST_LLM_ORDER`, and why any were skipped."""
    providers: list[Provider] = []
    skipped: dict[str, str] = {}
    names = [n.strip().lower() for n in settings.llm_order.split(",") if n.strip()]
    for name in dict.fromkeys(_ALIASES.get(n, n) for n in names):
        if name == "deepseek":
            if settings.deepseek_api_key is None:
                skipped[name] = "DEEPSEEK_API_KEY is not set"
                continue
            providers.append(
                OpenAICompatProvider(
                    "deepseek",
                    api_key=settings.deepseek_api_key.get_secret_value(),
                    base_url=settings.deepseek_base_url,
                    model=settings.deepseek_model,
                    cheap_model=settings.deepseek_cheap_model,
                    timeout_s=settings.llm_timeout_s,
                    # Thinking is on by default and bills its reasoning as output.
                    extra_body={"thinking": {"type": "disabled"}},
                )
            )
        elif name == "qwen":
            if settings.dashscope_api_key is None:
                skipped[name] = "DASHSCOPE_API_KEY is not set"
                continue
            providers.append(
                DashScopeProvider(
                    api_key=settings.dashscope_api_key.get_secret_value(),
                    base_url=settings.dashscope_http_base_url,
                    model=settings.qwen_model,
                    cheap_model=settings.qwen_cheap_model,
                    timeout_s=settings.llm_timeout_s,
                )
            )
        elif name == "openai":
            if settings.openai_api_key is None:
                skipped[name] = "OPENAI_API_KEY is not set"
                continue
            providers.append(
                OpenAICompatProvider(
                    "openai",
                    api_key=settings.openai_api_key.get_secret_value(),
                    base_url=settings.openai_base_url,
                    model=settings.openai_model,
                    cheap_model=settings.openai_cheap_model,
                    timeout_s=settings.llm_timeout_s,
                    reasoning_effort=settings.openai_reasoning_effort,
                    max_tokens_param="max_completion_tokens",
                )
            )
        else:
            skipped[name] = "unknown provider (known: deepseek, qwen, openai)"
    return providers, skipped


def build_chain(settings: Settings, store: Store) -> LLMChain:
    """The chain of configured providers, with the ledger, prices and budget."""
    providers, skipped = build_providers(settings)
    for name, why in skipped.items():
        _LOGGER.info("llm provider %s skipped: %s", name, why)
    if not providers:
        _LOGGER.warning(
            "no LLM provider configured: summaries and checks use the extractive path"
        )
    return LLMChain(
        providers,
        ledger=Ledger(store),
        prices=PriceTable.load(settings.digest_prices),
        settings=settings,
        skipped=skipped,
    )
