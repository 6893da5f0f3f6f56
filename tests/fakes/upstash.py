"""A fake Upstash Vector REST API on 127.0.0.1, for the real upstash-vector SDK.

It speaks the endpoints the clusterer uses (upsert-data, upsert, query,
query-data, fetch, delete, info) with Upstash's JSON shapes: `{"result": ...}`
on success, `{"error": ..., "status": ...}` on failure, scores as
(1 + cos) / 2. Its built-in "model" is multilingual for the test
vocabulary: a small English-Chinese glossary maps words of both languages
to shared concepts, on top of hashed character n-grams.

Like the real index, new vectors can be fetched at once but are found by
queries only after a delay: here, until `settle()` is called. Faults are
injected per path with `fail(path, kind, times)`: "error" (an error
body), "500" (a non-JSON 500) or "timeout" (an answer that never comes in
time).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from functions.textnorm import compact, fold, is_cjk, ngram_hashes

DIM = 256
MODEL = "BGE_M3"

# Concepts shared by English and Chinese words of the test stories.
GLOSSARY: dict[str, tuple[str, ...]] = {
    "quake": ("earthquake", "quake", "地震"),
    "sichuan": ("sichuan", "四川"),
    "yunnan": ("yunnan", "云南"),
    "luding": ("luding", "泸定"),
    "dead": ("killed", "killing", "dead", "died", "kills", "遇难", "死亡"),
    "injured": ("injured", "injuring", "hurt", "受伤"),
    "rescue": ("rescue", "rescuers", "救援", "搜救"),
    "magnitude": ("magnitude", "级"),
    "central-bank": ("central bank", "pboc", "people's bank", "央行", "人民银行"),
    "reserve": ("reserve requirement", "reserve ratio", "存款准备金", "降准"),
    "liquidity": ("liquidity", "流动性", "资金"),
    "trillion": ("trillion", "万亿"),
    "taiwan": ("taiwan", "台湾"),
    "fishing-boat": ("fishing boat", "fishing vessel", "渔船"),
    "coast-guard": ("coast guard", "海巡"),
    "kinmen": ("kinmen", "金门"),
    "crew": ("crew", "船员"),
    "export": ("exports", "export", "出口"),
    "import": ("imports", "进口"),
    "customs": ("customs", "海关"),
    "xi": ("xi jinping", "习近平"),
    "brazil": ("brazil", "brazilian", "巴西"),
    "lula": ("lula", "卢拉"),
    "agreements": ("agreements", "deals", "合作文件", "协议"),
    "panda": ("panda", "熊猫"),
    "satellite": ("satellite", "satellites", "卫星"),
    "rain": ("rainstorm", "heavy rain", "暴雨"),
    "shanghai": ("shanghai", "上海"),
}


def fake_embed(text: str) -> np.ndarray:
    """The fake index's multilingual embedding: concepts plus character n-grams."""
    folded = fold(text)
    vector = np.zeros(DIM)
    for concept, words in GLOSSARY.items():
        hits = sum(folded.count(fold(w)) for w in words)
        if hits:
            vector[int(ngram_hashes(concept, 4)[0]) % DIM] += 3.0 * min(hits, 2)
    flat = compact(folded)
    grams = ngram_hashes(flat, 2 if is_cjk(flat) else 4)
    lexical = np.bincount(
        (grams % np.uint32(DIM)).astype(np.intp),
        weights=np.where(grams & np.uint32(0x80000000), -1.0, 1.0),
        minlength=DIM,
    )
    norm = np.linalg.norm(lexical)
    if norm:
        vector += 2.0 * lexical / norm
    norm = np.linalg.norm(vector)
    return vector / norm if norm else vector


# Filters ------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|'(?P<sq>[^']*)'|\"(?P<dq>[^\"]*)\""
    r"|(?P<op><=|>=|!=|=|<|>)|(?P<paren>[()])|(?P<word>[A-Za-z_][\w.]*))"
)


class FilterError(ValueError):
    pass


def _tokens(expression: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    expression = expression.strip()
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        if not match or match.end() == pos:
            raise FilterError(f"bad filter near {expression[pos : pos + 10]!r}")
        pos = match.end()
        if match.group("num") is not None:
            out.append(("lit", float(match.group("num"))))
        elif match.group("sq") is not None:
            out.append(("lit", match.group("sq")))
        elif match.group("dq") is not None:
            out.append(("lit", match.group("dq")))
        elif match.group("op"):
            out.append(("op", match.group("op")))
        elif match.group("paren"):
            out.append(("paren", match.group("paren")))
        else:
            word = match.group("word")
            upper = word.upper()
            if upper in ("AND", "OR"):
                out.append(("bool", upper))
            elif upper in ("TRUE", "FALSE"):
                out.append(("lit", upper == "TRUE"))
            else:
                out.append(("ident", word))
    return out


def matches(expression: str, metadata: dict[str, Any]) -> bool:
    """Evaluate the SQL-like subset of Upstash filters the clusterer sends."""
    if not expression.strip():
        return True
    tokens = _tokens(expression)
    pos = 0

    def peek() -> tuple[str, Any] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, Any]:
        nonlocal pos
        if pos >= len(tokens):
            raise FilterError("unexpected end of filter")
        pos += 1
        return tokens[pos - 1]

    def compare() -> bool:
        token = take()
        if token == ("paren", "("):
            value = disjunction()
            if take() != ("paren", ")"):
                raise FilterError("missing )")
            return value
        if token[0] != "ident":
            raise FilterError(f"expected a key, got {token[1]!r}")
        kind, op = take()
        kind_lit, literal = take()
        if kind != "op" or kind_lit != "lit":
            raise FilterError("expected an operator and a literal")
        actual: Any = metadata
        for part in token[1].split("."):
            actual = actual.get(part) if isinstance(actual, dict) else None
        if actual is None:
            return op == "!="
        if isinstance(literal, float) and isinstance(actual, (int, float)):
            actual = float(actual)
        try:
            return {
                "=": actual == literal,
                "!=": actual != literal,
                "<": actual < literal,
                "<=": actual <= literal,
                ">": actual > literal,
                ">=": actual >= literal,
            }[op]
        except TypeError:
            return False

    def conjunction() -> bool:
        nonlocal pos
        value = compare()
        while peek() == ("bool", "AND"):
            pos += 1
            value = compare() and value
        return value

    def disjunction() -> bool:
        nonlocal pos
        value = conjunction()
        while peek() == ("bool", "OR"):
            pos += 1
            value = conjunction() or value
        return value

    result = disjunction()
    if pos != len(tokens):
        raise FilterError("trailing tokens in filter")
    return result


# The server ---------------------------------------------------------------------


@dataclass
class _Record:
    id: str
    vector: np.ndarray
    metadata: dict[str, Any] | None
    data: str | None


@dataclass
class _Fault:
    kind: str
    times: int
    after: int


@dataclass
class FakeUpstash:
    """State and behaviour of the fake index; `app` serves it."""

    token: str = "fake-upstash-token"
    delay_s: float = 2.0
    records: dict[str, dict[str, _Record]] = field(default_factory=dict)
    pending: set[tuple[str, str]] = field(default_factory=set)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    faults: dict[str, _Fault] = field(default_factory=dict)
    stopping: bool = False

    def reset(self) -> None:
        self.records.clear()
        self.pending.clear()
        self.calls.clear()
        self.faults.clear()

    def settle(self) -> None:
        """Make every upserted vector queryable, as the real index does in time."""
        self.pending.clear()

    def fail(
        self, path: str, kind: str = "error", times: int = 1, after: int = 0
    ) -> None:
        """Fail `times` calls to `path`, once `after` calls have gone through."""
        self.faults[path] = _Fault(kind, times, after)

    def paths(self) -> list[str]:
        return [path for path, _ in self.calls]

    def stored(self, namespace: str = "") -> dict[str, _Record]:
        return self.records.get(namespace, {})

    # endpoints ----------------------------------------------------------------

    async def _fault(self, path: str) -> Response | None:
        fault = self.faults.get(path)
        if fault is None or fault.times <= 0:
            return None
        if fault.after > 0:
            fault.after -= 1
            return None
        fault.times -= 1
        if fault.kind == "timeout":
            deadline = time.monotonic() + self.delay_s
            while time.monotonic() < deadline and not self.stopping:
                await asyncio.sleep(0.02)
            return JSONResponse({"error": "too late", "status": 504}, status_code=504)
        if fault.kind == "500":
            return PlainTextResponse("Internal Server Error", status_code=500)
        return JSONResponse(
            {"error": "ERR injected failure", "status": 400}, status_code=400
        )

    async def handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "Unauthorized", "status": 401}, 401)
        parts = request.url.path.strip("/").split("/", 1)
        path, namespace = "/" + parts[0], parts[1] if len(parts) > 1 else ""
        raw = await request.body()
        body = await request.json() if raw and raw != b"null" else None
        self.calls.append((path, body))

        fault = await self._fault(path)
        if fault is not None:
            return fault
        try:
            result = self._dispatch(path, namespace, body)
        except (FilterError, KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc), "status": 400}, status_code=400)
        return JSONResponse({"result": result})

    def _dispatch(self, path: str, namespace: str, body: Any) -> Any:
        table = self.records.setdefault(namespace, {})
        if path in ("/upsert-data", "/upsert"):
            for entry in body if isinstance(body, list) else [body]:
                vector = (
                    fake_embed(entry["data"])
                    if path == "/upsert-data"
                    else np.asarray(entry["vector"], dtype=float)
                )
                record = _Record(
                    str(entry["id"]), vector, entry.get("metadata"), entry.get("data")
                )
                table[record.id] = record
                self.pending.add((namespace, record.id))
            return "Success"
        if path in ("/query", "/query-data"):
            if isinstance(body, list):
                return [self._query(path, namespace, q) for q in body]
            return self._query(path, namespace, body)
        if path == "/fetch":
            wanted = body.get("ids")
            if wanted is None:
                prefix = body.get("prefix", "")
                wanted = [i for i in table if i.startswith(prefix)]
            return [
                self._render(table[i], body, None) if i in table else None
                for i in wanted
            ]
        if path == "/delete":
            doomed = set(body.get("ids") or [])
            if body.get("prefix"):
                doomed |= {i for i in table if i.startswith(body["prefix"])}
            if body.get("filter"):
                doomed |= {
                    i
                    for i, r in table.items()
                    if matches(body["filter"], r.metadata or {})
                }
            deleted = [i for i in doomed if table.pop(i, None) is not None]
            return {"deleted": len(deleted)}
        if path == "/info":
            return self._info()
        raise ValueError(f"unknown path {path}")

    def _query(self, path: str, namespace: str, query: dict[str, Any]) -> list[Any]:
        if path == "/query-data":
            vector = fake_embed(query["data"])
        else:
            vector = np.asarray(query["vector"], dtype=float)
        norm = np.linalg.norm(vector)
        vector = vector / norm if norm else vector
        expression = query.get("filter", "")
        scored = []
        for record in self.records.get(namespace, {}).values():
            if (namespace, record.id) in self.pending:
                continue
            if not matches(expression, record.metadata or {}):
                continue
            other = record.vector / (np.linalg.norm(record.vector) or 1.0)
            scored.append(((1.0 + float(vector @ other)) / 2.0, record))
        scored.sort(key=lambda s: (-s[0], s[1].id))
        top = scored[: int(query.get("topK", 10))]
        return [self._render(r, query, score) for score, r in top]

    @staticmethod
    def _render(record: _Record, options: dict[str, Any], score: float | None) -> Any:
        out: dict[str, Any] = {"id": record.id}
        if score is not None:
            out["score"] = score
        if options.get("includeVectors"):
            out["vector"] = record.vector.tolist()
        if options.get("includeMetadata") and record.metadata is not None:
            out["metadata"] = record.metadata
        if options.get("includeData") and record.data is not None:
            out["data"] = record.data
        return out

    def _info(self) -> dict[str, Any]:
        counts = {
            ns: {
                "vectorCount": sum(1 for i in t if (ns, i) not in self.pending),
                "pendingVectorCount": sum(1 for i in t if (ns, i) in self.pending),
            }
            for ns, t in self.records.items()
        } or {"": {"vectorCount": 0, "pendingVectorCount": 0}}
        return {
            "vectorCount": sum(c["vectorCount"] for c in counts.values()),
            "pendingVectorCount": sum(c["pendingVectorCount"] for c in counts.values()),
            "indexSize": 0,
            "dimension": DIM,
            "similarityFunction": "COSINE",
            "denseIndex": {
                "dimension": DIM,
                "similarityFunction": "COSINE",
                "embeddingModel": MODEL,
            },
            "sparseIndex": None,
            "namespaces": counts,
        }

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/{path:path}", self.handle, methods=["POST", "GET"])]
        )


class ServedFake:
    """Serves a FakeUpstash with uvicorn in a thread, on 127.0.0.1, any free port."""

    def __init__(self, fake: FakeUpstash) -> None:
        self.fake = fake
        config = uvicorn.Config(
            fake.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> ServedFake:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the fake Upstash server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.fake.stopping = True
        self.server.should_exit = True
        self.thread.join(timeout=10)
