"""The demo's local feed server: the shipped sample feeds on 127.0.0.1.

The samples were written around one reference day; the server shifts
every date so the newest item is an hour old, which keeps the demo's
digest fresh whenever it runs. It answers conditional GETs with 304
like a well-behaved feed server, so the real fetch path runs end to end.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from infra.readers import Reader, reader_id_for

_LOGGER = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parent / "samples"
_RFC822 = re.compile(rb"(<(pubDate|lastBuildDate)>)([^<]+)(</\2>)")
_ISO = re.compile(rb"(<(published|updated)>)([^<]+)(</\2>)")


def _shift_dates(body: bytes, delta: timedelta) -> bytes:
    def rfc822(match: re.Match[bytes]) -> bytes:
        try:
            when = parsedate_to_datetime(match.group(3).decode("ascii").strip())
        except (TypeError, ValueError, UnicodeDecodeError):
            return match.group(0)
        shifted = format_datetime(when + delta).encode("ascii")
        return match.group(1) + shifted + match.group(4)

    def iso(match: re.Match[bytes]) -> bytes:
        raw = match.group(3).decode("ascii", "replace").strip().replace("Z", "+00:00")
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            return match.group(0)
        return (
            match.group(1) + (when + delta).isoformat().encode("ascii") + match.group(4)
        )

    return _ISO.sub(iso, _RFC822.sub(rfc822, body))


def newest_sample_time(directory: Path = SAMPLES) -> datetime:
    newest = datetime(1970, 1, 1, tzinfo=UTC)
    for path in directory.glob("*.xml"):
        for match in _RFC822.finditer(path.read_bytes()):
            try:
                when = parsedate_to_datetime(match.group(3).decode("ascii").strip())
            except (TypeError, ValueError, UnicodeDecodeError):
                continue
            if when.tzinfo and match.group(2) == b"pubDate":
                newest = max(newest, when)
        for match in _ISO.finditer(path.read_bytes()):
            raw = match.group(3).decode("ascii", "replace").strip()
            try:
                when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                continue
            if when.tzinfo:
                newest = max(newest, when)
    return newest


class _Handler(BaseHTTPRequestHandler):
    server_version = "SampleFeeds/1.0"
    directory: Path = SAMPLES
    delta: timedelta = timedelta(0)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        name = self.path.split("?", 1)[0].lstrip("/")
        path = (self.directory / name).resolve()
        if path.parent != self.directory.resolve() or not path.is_file():
            self.send_error(404, "no such sample feed")
            return
        body = _shift_dates(path.read_bytes(), self.delta)
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        _LOGGER.debug("sample server: " + format, *args)


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 makes the sixth simultaneous connect wait ~1s.
    request_queue_size = 128
    daemon_threads = True


@contextmanager
def serve_samples(
    directory: Path = SAMPLES, *, now: datetime | None = None
) -> Iterator[str]:
    """Serve the sample feeds on 127.0.0.1; yields the base URL."""
    now = now or datetime.now(UTC)
    delta = (now - timedelta(hours=1)) - newest_sample_time(directory)
    handler = type(
        "SampleHandler", (_Handler,), {"directory": directory, "delta": delta}
    )
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def sample_readers(path: Path = SAMPLES / "readers.toml") -> list[Reader]:
    """The demo's readers: different languages, topics and digest sizes."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    readers = []
    for entry in data.get("reader", []):
        chat_id = str(entry.pop("chat_id"))
        readers.append(Reader(id=reader_id_for(chat_id), chat_id=chat_id, **entry))
    return readers
