"""A programmable feed server on 127.0.0.1 for the collection tests and bench.

Each path answers with a queue of `Reply`s (the last one repeats), so a
test can say "503 twice, then the feed". The server counts hits, remembers
each request's headers and when it arrived, answers conditional requests
with 304 when a reply carries validators, and can stall, drip the body
slowly, redirect or send pre-compressed bytes.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One programmed answer."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/rss+xml"
    delay_s: float = 0.0  # before the status line
    drip_s: float = 0.0  # between body chunks
    drip_chunk: int = 16
    gzip: bool = False  # compress `body` and say so
    etag: str | None = None  # answer 304 when If-None-Match matches
    last_modified: str | None = None  # answer 304 when If-Modified-Since matches
    content_length: bool = True


@dataclass
class Hit:
    path: str
    at: float
    headers: dict[str, str]

    @property
    def conditional(self) -> bool:
        return "if-none-match" in self.headers or "if-modified-since" in self.headers


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops simultaneous connects beyond it, and
    # the client's SYN retry adds a second that belongs to no source.
    request_queue_size = 128


class FeedServer:
    """A threaded HTTP server on an ephemeral loopback port."""

    def __init__(self) -> None:
        self._routes: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.hits: dict[str, list[Hit]] = defaultdict(list)
        self.not_modified: dict[str, int] = defaultdict(int)
        self.bytes_sent: dict[str, int] = defaultdict(int)  # bodies only
        # Everything on the wire: request line and headers in, status line,
        # headers and body out.
        self.wire_bytes: dict[str, int] = defaultdict(int)
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def route(self, path: str, *replies: Reply | bytes) -> str:
        """Program `path` to give these replies in turn; returns its URL."""
        queue = [r if isinstance(r, Reply) else Reply(body=r) for r in replies]
        with self._lock:
            self._routes["/" + path.lstrip("/")] = queue or [Reply(status=404)]
        return self.url(path)

    def hit_count(self, path: str) -> int:
        return len(self.hits["/" + path.lstrip("/")])

    def conditional_count(self, path: str) -> int:
        return sum(h.conditional for h in self.hits["/" + path.lstrip("/")])

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            queue = self._routes.get(path)
            if not queue:
                return Reply(b"no such route", status=404, content_type="text/plain")
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.wfile = _CountingWriter(self.wfile)  # type: ignore[assignment]

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                headers = {k.lower(): v for k, v in self.headers.items()}
                request_size = len(self.requestline) + 4 + len(self.headers.as_bytes())
                written = self.wfile.count  # type: ignore[attr-defined]
                with server._lock:
                    server.hits[path].append(Hit(path, time.monotonic(), headers))
                try:
                    self._answer(path, headers)
                finally:
                    sent = self.wfile.count - written  # type: ignore[attr-defined]
                    with server._lock:
                        server.wire_bytes[path] += request_size + sent

            def _answer(self, path: str, headers: dict[str, str]) -> None:
                reply = server._next_reply(path)
                if reply.delay_s and server._closing.wait(reply.delay_s):
                    return
                if _matches(reply, headers):
                    server.not_modified[path] += 1
                    self.send_response(304)
                    if reply.etag:
                        self.send_header("ETag", reply.etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._send(path, reply)

            def _send(self, path: str, reply: Reply) -> None:
                body = gzip.compress(reply.body) if reply.gzip else reply.body
                self.send_response(reply.status)
                if reply.content_type:
                    self.send_header("Content-Type", reply.content_type)
                if reply.gzip:
                    self.send_header("Content-Encoding", "gzip")
                if reply.etag:
                    self.send_header("ETag", reply.etag)
                if reply.last_modified:
                    self.send_header("Last-Modified", reply.last_modified)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.content_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                try:
                    self._write(body, reply)
                except (BrokenPipeError, ConnectionResetError):
                    return
                server.bytes_sent[path] += len(body)

            def _write(self, body: bytes, reply: Reply) -> None:
                if not reply.drip_s:
                    self.wfile.write(body)
                    return
                for start in range(0, len(body), reply.drip_chunk):
                    self.wfile.write(body[start : start + reply.drip_chunk])
                    self.wfile.flush()
                    if server._closing.wait(reply.drip_s):
                        return

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler


class _CountingWriter:
    """A socket writer that counts what passes through it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return int(self.inner.write(data))

    def flush(self) -> None:
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _matches(reply: Reply, headers: dict[str, str]) -> bool:
    if reply.etag and headers.get("if-none-match") == reply.etag:
        return True
    return bool(
        reply.last_modified
        and headers.get("if-modified-since") == reply.last_modified
        and "if-none-match" not in headers
    )


@contextmanager
def serve() -> Iterator[FeedServer]:
    """A running FeedServer, stopped on exit."""
    server = FeedServer().start()
    try:
        yield server
    finally:
        server.stop()


def rss(
    *items: str,
    title: str = "Test feed",
    link: str = "https://example.test/",
    language: str | None = None,
    encoding: str = "utf-8",
    declaration: bool = True,
) -> str:
    """An RSS 2.0 document around already-written <item> elements."""
    decl = f'<?xml version="1.0" encoding="{encoding}"?>\n' if declaration else ""
    lang = f"<language>{language}</language>" if language else ""
    return (
        f'{decl}<rss version="2.0"><channel><title>{title}</title>'
        f"<link>{link}</link>{lang}{''.join(items)}</channel></rss>"
    )


def item(
    title: str | None = "An item",
    link: str | None = None,
    guid: str | None = None,
    date: str | None = None,
    description: str | None = None,
    extra: str = "",
) -> str:
    """One RSS <item>; every part optional."""
    parts = []
    if title is not None:
        parts.append(f"<title>{title}</title>")
    if link is not None:
        parts.append(f"<link>{link}</link>")
    if guid is not None:
        parts.append(f'<guid isPermaLink="false">{guid}</guid>')
    if date is not None:
        parts.append(f"<pubDate>{date}</pubDate>")
    if description is not None:
        parts.append(f"<description>{description}</description>")
    return "<item>" + "".join(parts) + extra + "</item>"
