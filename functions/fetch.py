"""Fetch every source concurrently, politely and within a deadline.

One shared `httpx.AsyncClient`; a per-source timeout and a total deadline;
retries with jittered exponential backoff only for transient failures
(connect errors, timeouts, 429 honouring Retry-After, 5xx); conditional
GET so an unchanged feed costs one 304; a cap on the body before and
after decompression. Nothing here raises for a bad source: every source
ends with a `FetchOutcome` that says what happened.

The per-source timeout bounds a whole attempt, not each socket read, so a
server dripping one byte at a time cannot hold a source past it. The body
is inflated here, not by httpx, in bounded steps: a gzip bomb is refused
once its output passes the cap, having allocated little more than that.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import zlib
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
MAX_REDIRECTS = 5
ACCEPT_ENCODING = "gzip, deflate"
_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/xml;q=0.9, "
    "text/xml;q=0.9, */*;q=0.5"
)
_INFLATE_STEP = 64 * 1024
_SECONDS = re.compile(r"^\d+(\.\d+)?$")
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
    status: str  # ok | not_modified | failed | blocked
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    http_status: int | None = None
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    bytes_received: int = 0
    attempts: int = 0
    elapsed_s: float = 0.0
    retry_after: float | None = None  # seconds the server asked us to wait

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
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 30.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.match(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _wait(policy: FetchPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_random_exponential(
        multiplier=policy.backoff_s, max=policy.backoff_max_s
    )

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, FetchError) and exc.retry_after is not None:
            return exc.retry_after
        return float(backoff(state))

    return wait


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, FetchError) and exc.transient


def is_local(url: str) -> bool:
    return url.startswith("file://") or "://" not in url


def _read_local(url: str, max_bytes: int) -> bytes:
    path = Path(unquote(urlparse(url).path)) if url.startswith("file://") else Path(url)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise FetchError(f"file is {size} bytes, over the {max_bytes}-byte cap")
        return path.read_bytes()
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from exc


def looks_like_challenge(body: bytes) -> bool:
    """An anti-bot or access-denied HTML page rather than a feed."""
    head = body[:8192].lower()
    if b"<rss" in head or b"<feed" in head or b"<rdf" in head:
        return False
    return b"<html" in head and any(marker in head for marker in _CHALLENGE_MARKERS)


class _Inflater:
    """Undo the response's Content-Encoding without ever passing the cap."""

    def __init__(self, encoding: str, max_bytes: int) -> None:
        codings = [c.strip() for c in encoding.lower().split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        unknown = [c for c in codings if c not in ("gzip", "x-gzip", "deflate")]
        if unknown:
            raise FetchError(f"unsupported Content-Encoding: {', '.join(unknown)}")
        if len(codings) > 1:
            raise FetchError(f"stacked Content-Encoding refused: {encoding}")
        self.coding = codings[0] if codings else None
        self.max_bytes = max_bytes
        self.size = 0
        self._zlib: zlib._Decompress | None = None
        if self.coding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes, wire_bytes: int) -> list[bytes]:
        if self.coding is None:
            self._count(len(data), wire_bytes)
            return [data]
        if self.coding == "deflate" and self._zlib is None:
            # "deflate" is meant to be zlib-wrapped; some servers send it raw.
            wrapped = (
                len(data) >= 2
                and data[0] & 0x0F == 8
                and (data[0] * 256 + data[1]) % 31 == 0
            )
            bits = zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS
            self._zlib = zlib.decompressobj(bits)
        assert self._zlib is not None
        out = []
        try:
            while data:
                piece = self._zlib.decompress(data, _INFLATE_STEP)
                self._count(len(piece), wire_bytes)
                out.append(piece)
                data = self._zlib.unconsumed_tail
        except zlib.error as exc:
            raise FetchError(f"body could not be decompressed: {exc}") from exc
        return out

    def _count(self, produced: int, wire_bytes: int) -> None:
        self.size += produced
        if wire_bytes > self.max_bytes:
            raise FetchError(f"body is over the {self.max_bytes}-byte cap")
        if self.size > self.max_bytes:
            raise FetchError(
                f"body inflates past the {self.max_bytes}-byte cap "
                f"(from {wire_bytes} compressed bytes): refused"
            )


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """Read and inflate the body, stopping once the wire or inflated size is too big."""
    inflater = _Inflater(response.headers.get("content-encoding", ""), max_bytes)
    chunks: list[bytes] = []
    async for raw in response.aiter_raw():
        chunks.extend(inflater.feed(raw, response.num_bytes_downloaded))
    return b"".join(chunks)


async def _get_once(
    client: httpx.AsyncClient,
    source: Source,
    policy: FetchPolicy,
    validators: dict[str, str | None],
) -> FetchOutcome:
    headers = {"Accept-Encoding": ACCEPT_ENCODING}
    if validators.get("etag"):
        headers["If-None-Match"] = str(validators["etag"])
    if validators.get("last_modified"):
        headers["If-Modified-Since"] = str(validators["last_modified"])

    try:
        async with asyncio.timeout(policy.timeout_s):
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
                        f"body of {declared} bytes is over the "
                        f"{policy.max_bytes}-byte cap",
                        status=status,
                    )
                body = await _read_capped(response, policy.max_bytes)
                received = response.num_bytes_downloaded
    except TimeoutError as exc:
        raise FetchError(
            f"timed out after {policy.timeout_s:g}s", transient=True
        ) from exc
    except httpx.TooManyRedirects as exc:
        raise FetchError(
            f"redirect loop (more than {MAX_REDIRECTS} redirects)"
        ) from exc
    except httpx.TimeoutException as exc:
        raise FetchError(
            f"timed out after {policy.timeout_s:g}s ({type(exc).__name__})",
            transient=True,
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise FetchError(f"unsupported URL: {exc}") from exc
    except httpx.LocalProtocolError as exc:
        raise FetchError(f"request refused by the HTTP client: {exc}") from exc
    except httpx.TransportError as exc:
        raise FetchError(
            f"network error: {type(exc).__name__}: {exc}", transient=True
        ) from exc
    except httpx.InvalidURL as exc:
        raise FetchError(f"invalid URL: {exc}") from exc

    return _classify(source, response, status, body, received, policy)


def _classify(
    source: Source,
    response: httpx.Response,
    status: int,
    body: bytes,
    received: int,
    policy: FetchPolicy,
) -> FetchOutcome:
    """An outcome for a read answer, or the FetchError its status calls for."""
    is_html = "html" in response.headers.get("content-type", "").lower()
    challenge = looks_like_challenge(body)
    if status in (401, 403, 451) or (status >= 400 and challenge):
        kind = "anti-bot page" if challenge or is_html else "access refused"
        raise FetchError(
            f"blocked: HTTP {status} ({kind})", status=status, blocked=True
        )

    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 429 or status >= 500:
        reason = "rate limited (HTTP 429)" if status == 429 else f"HTTP {status}"
        if retry_after is not None and retry_after > policy.max_retry_after_s:
            # Waiting that long inside one run would only burn the deadline.
            raise FetchError(
                f"{reason}, asked to wait {retry_after:.0f}s",
                status=status,
                retry_after=retry_after,
                blocked=status == 429,
            )
        raise FetchError(
            reason,
            transient=True,
            status=status,
            retry_after=retry_after,
            blocked=status == 429,
        )
    if status >= 400:
        reason = {404: "not found", 410: "gone"}.get(status, "client error")
        raise FetchError(f"HTTP {status} ({reason})", status=status)
    if status >= 300:
        raise FetchError(f"HTTP {status} without a usable Location", status=status)
    if challenge:
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
            retry_after=exc.retry_after,
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


async def fetch_all(
    sources: Sequence[Source],
    policy: FetchPolicy,
    *,
    validators: dict[str, dict[str, str | None]] | None = None,
    on_done: Callable[[FetchOutcome], None] | None = None,
    client: httpx.AsyncClient | None = None,
) -> list[FetchOutcome]:
    """Fetch all sources at once; sources still running at the deadline fail."""
    if not sources:
        return []
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
            continue
        if task not in done or task.cancelled():
            error = f"run deadline of {policy.deadline_s:g}s reached"
        else:
            error = f"internal error: {task.exception()!r}"
            _LOGGER.error(
                "source %s: %s", source.name, error, exc_info=task.exception()
            )
        outcome = FetchOutcome(source, "failed", error=error)
        if on_done:
            on_done(outcome)
        outcomes.append(outcome)
    return outcomes
