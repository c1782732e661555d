"""A small in-process HTTP server that speaks enough of the Elasticsearch REST API
(indices, documents with optimistic concurrency, bulk, search with bool/term/terms/range
filters, knn and the RRF retriever, msearch, delete_by_query) for the real
``AsyncElasticsearch`` client to run against offline. It records every request, and a
test's hook can answer any request itself (an error, a delay). Scoring is crude
(multi_match matches everything, vectors score by cosine): it checks what the client
sends and the backend's bookkeeping, not retrieval quality.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from aiohttp import web

from tests.elasticsearch_fixtures import DIMS, es_error

@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _matches(q: dict, src: dict) -> bool:
    """The query shapes the backend sends (multi_match is not evaluated: it matches)."""
    if "match_all" in q or "multi_match" in q:
        return True
    if "bool" in q:
        return all(_matches(c, src) for part in ("must", "filter") for c in q["bool"].get(part, []))
    if "range" in q:
        (name, cond), = q["range"].items()
        value = src.get(name)
        if value is None:
            return False
        ops = {"gt": value.__gt__, "gte": value.__ge__, "lt": value.__lt__, "lte": value.__le__}
        return all(ops[op](bound) for op, bound in cond.items())
    if "terms" in q or "term" in q:
        (name, wanted), = (q.get("terms") or q["term"]).items()
        wanted = wanted if isinstance(wanted, list) else [wanted]
        value = src.get(name)
        values = value if isinstance(value, list) else [value]
        return bool(set(values) & set(wanted))
    raise AssertionError(f"the fake does not know query {q}")


def _filtered_source(src: dict, spec: Any) -> dict:
    if isinstance(spec, list):
        return {k: v for k, v in src.items() if k in spec}
    out = copy_json(src)
    for path in (spec or {}).get("excludes", []):
        head, _, tail = path.partition(".")
        if tail and isinstance(out.get(head), list):
            for item in out[head]:
                item.pop(tail, None)
        else:
            out.pop(path, None)
    return out


def copy_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _cosine(src: dict, vector: list[float]) -> float:
    q = np.asarray(vector, np.float32)
    return max(float(np.asarray(k["vector"], np.float32) @ q) for k in src.get("keys") or [{"vector": np.zeros(DIMS)}])


class FakeElasticsearch:
    """Enough of the Elasticsearch REST API, in memory, for the backend's requests.
    ``hook(recorded)`` may return (status, body) to answer instead, or change state."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.indices: dict[str, dict] = {}
        self.hook: Callable[[Recorded], Any] | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> "FakeElasticsearch":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def of(self, method: str = "", suffix: str = "") -> list[Recorded]:
        return [r for r in self.requests if (not method or r.method == method) and r.path.endswith(suffix)]

    def docs(self, index: str) -> dict[str, dict]:
        return self.indices[index]["docs"]

    @staticmethod
    def _reply(status: int, body: Any = None, head: bool = False) -> web.Response:
        headers = {"X-Elastic-Product": "Elasticsearch", "Content-Type": "application/vnd.elasticsearch+json;compatible-with=9"}
        return web.Response(status=status, body=None if head else json.dumps(body).encode(), headers=headers)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if "ndjson" in request.headers.get("Content-Type", ""):
            body = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        else:
            body = json.loads(raw) if raw else None
        rec = Recorded(request.method, request.path, dict(request.query), body, {k.lower(): v for k, v in request.headers.items()})
        self.requests.append(rec)
        if self.hook is not None:
            answer = self.hook(rec)
            if asyncio.iscoroutine(answer):
                answer = await answer
            if answer is not None:
                return self._reply(*answer, head=request.method == "HEAD")
        status, payload = self._route(rec)
        return self._reply(status, payload, head=request.method == "HEAD")

    def _missing(self, name: str) -> tuple[int, dict]:
        return 404, es_error(404, "index_not_found_exception", f"no such index [{name}]")

    def _route(self, r: Recorded) -> tuple[int, Any]:
        parts = [p for p in r.path.split("/") if p]
        if parts == ["_bulk"]:
            return self._bulk(r.body)
        if parts[-1] == "_msearch":
            pairs = list(zip(r.body[0::2], r.body[1::2], strict=True))
            return 200, {"responses": [dict(self._search(parts[0], b)[1], status=200) for _, b in pairs]}
        name = parts[0]
        index = self.indices.get(name)
        if len(parts) == 1:
            if r.method == "HEAD":
                return (200 if index else 404), None
            if r.method == "PUT":
                if index:
                    return 400, es_error(400, "resource_already_exists_exception", f"index [{name}] already exists")
                self.indices[name] = {"settings": r.body["settings"], "mappings": r.body["mappings"], "docs": {}, "seq": {}}
                return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}
            if r.method == "DELETE":
                for n in name.split(","):
                    self.indices.pop(n, None)
                return 200, {"acknowledged": True}
        if index is None:
            return self._missing(name)
        op = parts[1]
        if op == "_mapping":
            return 200, {name: {"mappings": index["mappings"]}}
        if op == "_search":
            return self._search(name, r.body)
        if op == "_delete_by_query":
            gone = [i for i, s in index["docs"].items() if _matches(r.body["query"], s)]
            for i in gone:
                del index["docs"][i]
            return 200, {"deleted": len(gone), "failures": [], "timed_out": False}
        doc_id = parts[2]
        if op == "_doc" and r.method == "GET":
            if doc_id not in index["docs"]:
                return 404, {"_index": name, "_id": doc_id, "found": False}
            return 200, {"_index": name, "_id": doc_id, "found": True, "_seq_no": index["seq"][doc_id], "_primary_term": 1,
                         "_source": index["docs"][doc_id]}
        if op in ("_doc", "_create"):
            exists = doc_id in index["docs"]
            if op == "_create" and exists:
                return 409, es_error(409, "version_conflict_engine_exception", "document already exists")
            if "if_seq_no" in r.query and (not exists or int(r.query["if_seq_no"]) != index["seq"][doc_id]):
                return 409, es_error(409, "version_conflict_engine_exception", "sequence number mismatch")
            index["docs"][doc_id] = r.body
            index["seq"][doc_id] = index["seq"].get(doc_id, -1) + 1
            return (200 if exists else 201), {"_id": doc_id, "result": "updated" if exists else "created"}
        raise AssertionError(f"the fake does not know {r.method} {r.path}")

    def _bulk(self, lines: list[dict]) -> tuple[int, dict]:
        items, i = [], 0
        while i < len(lines):
            (action, meta), = lines[i].items()
            index = self.indices.get(meta["_index"])
            if action == "index":
                index["docs"][meta["_id"]] = lines[i + 1]
                items.append({"index": {"_id": meta["_id"], "status": 201, "result": "created"}})
                i += 2
            else:
                found = index["docs"].pop(meta["_id"], None) is not None
                items.append({"delete": {"_id": meta["_id"], "status": 200 if found else 404, "result": "deleted" if found else "not_found"}})
                i += 1
        return 200, {"took": 1, "errors": False, "items": items}

    def _search(self, name: str, body: dict) -> tuple[int, dict]:
        index = self.indices.get(name)
        if index is None:
            return self._missing(name)
        docs = list(index["docs"].items())
        if "sort" in body:  # the bookkeeping scan
            keyed = sorted(((s["doc_id"], s["version"], s["chunk_id"]), i, s) for i, s in docs)
            after = tuple(body.get("search_after") or ())
            page = [k for k in keyed if not after or k[0] > after][: body["size"]]
            hits = [{"_id": i, "_source": _filtered_source(s, body["_source"]), "sort": list(key)} for key, i, s in page]
            return 200, {"hits": {"hits": hits}}
        if "retriever" in body:
            standard, knn = body["retriever"]["rrf"]["retrievers"]
            query, vector = standard["standard"]["query"], knn["knn"]["query_vector"]
            assert query["bool"]["filter"] == knn["knn"]["filter"]
        elif "knn" in body:
            query, vector = {"bool": {"filter": body["knn"]["filter"]}}, body["knn"]["query_vector"]
        else:
            query, vector = body["query"], None
        found = [(i, s) for i, s in docs if _matches(query, s) and s.get("kind") != "tombstone"]
        scored = [(i, s, (1 + _cosine(s, vector)) / 2 if vector else 1.0) for i, s in found]
        scored.sort(key=lambda t: -t[2])
        hits = [{"_id": i, "_score": score, "_source": _filtered_source(s, body["_source"])} for i, s, score in scored[: body["size"]]]
        return 200, {"hits": {"hits": hits}}
