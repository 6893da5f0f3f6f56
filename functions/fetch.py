"""Fetch every source concurrently, politely and within a deadline.

One shared `httpx.AsyncClient`; a per-source timeout and a total deadline;
retries with jittered exponential backoff only for transient failures
(connect errors, timeouts, 429 honouring Retry-After, 5xx); conditional
GET so an unchanged feed costs one 304; a cap on the body before and
after decompression. Nothing here raises for a bad source: every source
ends with a `FetchOutcome` that says what happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from functions.models import Source

_LOGGER = logging.getLogger(__name__)

USER_AGENT = (
    "ChinaToWatch/0.1 (news digest; feed reader; +https://github.com/china-to-watch)"
)
MAX_RETRY_AFTER_S = 30.0
MAX_REDIRECTS = 5
_CHALLENGE_MARKERS = (
    b"cf-browser-verification",
    b"cf_chl_",
    b"challenge-platform",
    b"just a moment...",
    b"attention required! | cloudflare",
    b"captcha",
    b"ddos-guard",
    b"access denied",
)


class FetchError(Exception):
    """A source could not be fetched; `transient` says whether to try again."""

    def __init__(
        self,
        reason: str,
        *,
        transient: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
        blocked: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.status = status
        self.retry_after = retry_after
        self.blocked = blocked


@dataclass
class FetchOutcome:
    """What one source gave: a body, a 304, or a failure with its reason."""

    source: Source
    status: str  # ok | not_modified | failed | blocked | paused
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    http_status: int | None = None
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    bytes_received: int = 0
    attempts: int = 0
    elapsed_s: float = 0.0

    @property
    def final_url(self) -> str:
        return self.headers.get("content-location", self.source.url)


@dataclass
class FetchPolicy:
    timeout_s: float = 15.0
    deadline_s: float = 60.0
    max_bytes: int = 5_000_000
    retries: int = 2
    concurrency: int = 16
    backoff_max_s: float = 8.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _wait(policy: FetchPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_random_exponential(multiplier=0.5, max=policy.backoff_max_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, FetchError) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER_S)
        return backoff(state)

    return wait


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, FetchError) and exc.transient


def is_local(url: str) -> bool:
    return url.startswith("file://") or "://" not in url


def _read_local(url: str, max_bytes: int) -> bytes:
    path = Path(unquote(urlparse(url).path)) if url.startswith("file://") else Path(url)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise FetchError(f"file is {size} bytes, over the {max_bytes}-byte cap")
    return path.read_bytes()


def looks_like_challenge(body: bytes) -> bool:
    """An anti-bot or access-denied HTML page rather than a feed."""
    head = body[:8192].lower()
    if b"<rss" in head or b"<feed" in head or b"<rdf" in head:
        return False
    return b"<html" in head and any(marker in head for marker in _CHALLENGE_MARKERS)


async def _get_once(
    client: httpx.AsyncClient,
    source: Source,
    policy: FetchPolicy,
    validators: dict[str, str | None],
) -> FetchOutcome:
    headers = {}
    if validators.get("etag"):
        headers["If-None-Match"] = str(validators["etag"])
    if validators.get("last_modified"):
        headers["If-Modified-Since"] = str(validators["last_modified"])

    try:
        async with client.stream(
            "GET", source.url, headers=headers, timeout=policy.timeout_s
        ) as response:
            status = response.status_code
            if status == 304:
                return FetchOutcome(
                    source,
                    "not_modified",
                    http_status=304,
                    etag=validators.get("etag"),
                    last_modified=validators.get("last_modified"),
                    bytes_received=response.num_bytes_downloaded,
                )

            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > policy.max_bytes:
                raise FetchError(
                    f"body of {declared} bytes is over the {policy.max_bytes}-byte cap",
                    status=status,
                )

            body = await _read_capped(response, policy.max_bytes)
            received = response.num_bytes_downloaded
    except httpx.TooManyRedirects as exc:
        raise FetchError(
            f"redirect loop (more than {MAX_REDIRECTS} redirects)"
        ) from exc
    except httpx.TimeoutException as exc:
        raise FetchError(
            f"timed out after {policy.timeout_s:g}s ({type(exc).__name__})",
            transient=True,
        ) from exc
    except httpx.DecodingError as exc:
        raise FetchError(f"body could not be decompressed: {exc}") from exc
    except httpx.TransportError as exc:
        raise FetchError(
            f"network error: {type(exc).__name__}: {exc}", transient=True
        ) from exc

    retry_after = parse_retry_after(response.headers.get("retry-after"))
    is_html = "html" in response.headers.get("content-type", "").lower()
    if status == 429 or status >= 500:
        raise FetchError(
            f"HTTP {status}",
            transient=True,
            status=status,
            retry_after=retry_after,
            blocked=status == 429,
        )
    if status in (401, 403, 451) or (status >= 400 and looks_like_challenge(body)):
        kind = "anti-bot page" if is_html else "access refused"
        raise FetchError(
            f"blocked: HTTP {status} ({kind})", status=status, blocked=True
        )
    if status >= 400:
        reason = {404: "not found", 410: "gone"}.get(status, "client error")
        raise FetchError(f"HTTP {status} ({reason})", status=status)
    if looks_like_challenge(body):
        raise FetchError(
            "blocked: anti-bot challenge page", status=status, blocked=True
        )

    return FetchOutcome(
        source,
        "ok",
        body=body,
        headers={k.lower(): v for k, v in response.headers.items()}
        | {"content-location": str(response.url)},
        http_status=status,
        etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"),
        bytes_received=received,
    )


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """Read the body, stopping once the wire or the inflated size is too big."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if response.num_bytes_downloaded > max_bytes:
            raise FetchError(f"body is over the {max_bytes}-byte cap")
        if size > max_bytes:
            raise FetchError(
                f"body inflates past the {max_bytes}-byte cap "
                f"(compressed {response.num_bytes_downloaded} bytes): refused"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch_source(
    client: httpx.AsyncClient,
    source: Source,
    policy: FetchPolicy,
    validators: dict[str, str | None] | None = None,
) -> FetchOutcome:
    """Fetch one source with retries; never raises for the source's own failures."""
    started = time.monotonic()
    attempts = 0

    if is_local(source.url):
        try:
            body = _read_local(source.url, policy.max_bytes)
        except FetchError as exc:
            return FetchOutcome(source, "failed", error=exc.reason, attempts=1)
        return FetchOutcome(
            source,
            "ok",
            body=body,
            bytes_received=len(body),
            attempts=1,
            elapsed_s=time.monotonic() - started,
        )

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(policy.retries + 1),
            wait=_wait(policy),
            reraise=True,
        ):
            with attempt:
                attempts += 1
                outcome = await _get_once(client, source, policy, validators or {})
    except FetchError as exc:
        _LOGGER.warning(
            "source %s failed after %d attempt(s): %s",
            source.name,
            attempts,
            exc.reason,
        )
        return FetchOutcome(
            source,
            "blocked" if exc.blocked else "failed",
            http_status=exc.status,
            error=exc.reason,
            attempts=attempts,
            elapsed_s=time.monotonic() - started,
        )

    outcome.attempts = attempts
    outcome.elapsed_s = time.monotonic() - started
    return outcome


def make_client(policy: FetchPolicy) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT, "Accept": _ACCEPT},
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        timeout=policy.timeout_s,
        limits=httpx.Limits(max_connections=policy.concurrency),
        trust_env=False,
    )


_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/xml;q=0.9, "
    "text/xml;q=0.9, */*;q=0.5"
)


async def fetch_all(
    sources: Sequence[Source],
    policy: FetchPolicy,
    *,
    validators: dict[str, dict[str, str | None]] | None = None,
    on_done: Callable[[FetchOutcome], None] | None = None,
    client: httpx.AsyncClient | None = None,
) -> list[FetchOutcome]:
    """Fetch all sources at once; sources still running at the deadline fail."""
    validators = validators or {}
    own_client = client is None
    client = client or make_client(policy)
    limit = asyncio.Semaphore(policy.concurrency)

    async def one(source: Source) -> FetchOutcome:
        async with limit:
            outcome = await fetch_source(
                client, source, policy, validators.get(source.name)
            )
        if on_done:
            on_done(outcome)
        return outcome

    tasks = {asyncio.create_task(one(s)): s for s in sources}
    try:
        done, pending = await asyncio.wait(tasks, timeout=policy.deadline_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    finally:
        if own_client:
            await client.aclose()

    outcomes = []
    for task, source in tasks.items():
        if task in done and not task.cancelled() and task.exception() is None:
            outcomes.append(task.result())
        else:
            error = (
                f"run deadline of {policy.deadline_s:g}s reached"
                if task not in done or task.cancelled()
                else f"internal error: {task.exception()!r}"
            )
            outcome = FetchOutcome(source, "failed", error=error)
            if on_done:
                on_done(outcome)
            outcomes.append(outcome)
    return outcomes
