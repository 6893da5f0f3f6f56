"""A fake Sentry ingest endpoint on 127.0.0.1 that records every envelope."""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Envelope:
    path: str
    raw: bytes
    header: dict[str, Any]
    items: list[tuple[dict[str, Any], Any]] = field(default_factory=list)


def parse_envelope(path: str, body: bytes) -> Envelope:
    """Split an envelope: a header line, then (item header, payload) pairs."""
    header_line, _, rest = body.partition(b"\n")
    envelope = Envelope(path=path, raw=body, header=json.loads(header_line))
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item_header = json.loads(item_line)
        if "length" in item_header:
            length = item_header["length"]
            payload, rest = rest[:length], rest[length:].removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        try:
            parsed: Any = json.loads(payload)
        except ValueError:
            parsed = payload
        envelope.items.append((item_header, parsed))
    return envelope


class FakeSentry:
    """Serves `POST /api/<project>/envelope/` and keeps what arrived."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding:
                    self.send_response(415)
                    self.end_headers()
                    return
                with fake._lock:
                    fake.envelopes.append(parse_envelope(self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/1"

    def start(self) -> FakeSentry:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def items(self, item_type: str) -> list[Any]:
        """Payloads of every item of one type (`event`, `check_in`, ...)."""
        with self._lock:
            return [
                payload
                for envelope in self.envelopes
                for header, payload in envelope.items
                if header.get("type") == item_type
            ]

    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(e.raw for e in self.envelopes)
