"""``kefu eval retrieval``: recall@k, MRR and search latency of the knowledge index.

Corpus lines are ``{"id", "text"}`` (optional ``"title"``, ``"locale"``); query
lines ``{"query", "relevant": [ids]}`` (optional ``"locale"``: search only that
locale). The corpus is ingested into a fresh index (a temporary folder, or
``--index-dir``, which is reused when it already holds the same corpus), then
every query is embedded once and ranked in each requested mode. Latency is the
ranking alone (BM25, vector scoring, fusion), with query embedding reported
apart, since the embedder runs elsewhere (Triton) in the service.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from services.errors import InvalidArgument
from services.knowledge.analysis import detect_locale
from services.knowledge.entries import LOCALES, MODES, KnowledgeEntry

KS = (1, 3, 5, 10)


@dataclass
class Query:
    text: str
    relevant: set[str]
    locale: str = ""


def read_jsonl(path: Path, what: str) -> list[tuple[int, dict]]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path}: cannot read {what}: {exc}") from exc
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{path}, line {n}: not JSON: {exc.msg}") from exc
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{path}, line {n}: expected a JSON object")
        out.append((n, obj))
    return out


def load_corpus(path: Path) -> list[KnowledgeEntry]:
    entries, seen = [], set()
    for n, obj in read_jsonl(path, "the corpus"):
        doc_id, text = str(obj.get("id", "")).strip(), str(obj.get("text", "")).strip()
        if not doc_id or not text:
            raise InvalidArgument(f"{path}, line {n}: a corpus line needs a non-empty \"id\" and \"text\"")
        if doc_id in seen:
            raise InvalidArgument(f"{path}, line {n}: id {doc_id!r} appears twice")
        seen.add(doc_id)
        locale = obj.get("locale") or detect_locale(text)
        if locale not in LOCALES:
            raise InvalidArgument(f"{path}, line {n}: locale must be zh or en, got {locale!r}")
        entries.append(KnowledgeEntry(id=doc_id, kind="article", title=str(obj.get("title", "")), locale=locale, body=text))
    if not entries:
        raise InvalidArgument(f"{path}: the corpus is empty")
    return entries


def load_queries(path: Path) -> list[Query]:
    queries = []
    for n, obj in read_jsonl(path, "the queries"):
        text, relevant = str(obj.get("query", "")).strip(), obj.get("relevant")
        if not text or not isinstance(relevant, list) or not relevant:
            raise InvalidArgument(f"{path}, line {n}: a query line needs \"query\" and a non-empty \"relevant\" list")
        locale = obj.get("locale", "")
        if locale and locale not in LOCALES:
            raise InvalidArgument(f"{path}, line {n}: locale must be zh or en, got {locale!r}")
        queries.append(Query(text, {str(r) for r in relevant}, locale))
    if not queries:
        raise InvalidArgument(f"{path}: no queries")
    return queries


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


def score_run(ranked: list[list[str]], queries: Sequence[Query], latencies_ms: Sequence[float]) -> dict:
    """The report's numbers from each query's ranked document ids."""
    recall = {k: 0 for k in KS}
    rr = 0.0
    for docs, q in zip(ranked, queries, strict=True):
        for k in KS:
            recall[k] += any(d in q.relevant for d in docs[:k])
        rank = next((i for i, d in enumerate(docs, start=1) if d in q.relevant), 0)
        rr += 1.0 / rank if rank else 0.0
    n = len(queries)
    out = {f"recall@{k}": round(recall[k] / n, 4) for k in KS}
    out.update(mrr=round(rr / n, 4), p50_ms=round(_percentile(latencies_ms, 50), 3), p99_ms=round(_percentile(latencies_ms, 99), 3), n=n)
    return out


async def evaluate(
    corpus: list[KnowledgeEntry],
    queries: list[Query],
    modes: Sequence[str],
    *,
    backend: str = "embedded",
    index_dir: Path | None = None,
    embedder=None,
    progress: bool = True,
    elasticsearch_url: str = "",
) -> dict:
    """Ingest ``corpus`` and rank every query in each mode: {mode: report}, plus "ingest" and "embedding"."""
    from services.embedding import LocalEmbedder

    for mode in modes:
        if mode not in MODES:
            raise InvalidArgument(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    embedder = embedder or LocalEmbedder()
    with tempfile.TemporaryDirectory(prefix="kefu-eval-") as tmp:
        where = Path(index_dir) if index_dir else Path(tmp)
        index = _make_index(backend, where, embedder, elasticsearch_url)
        await index.open()
        bar = _bar(len(corpus), "ingest", progress)
        t0 = time.perf_counter()
        passages = {"n": 0}

        def on_progress(done: int, total: int) -> None:
            passages["n"] = total
            bar.total = max(total, 1)
            bar.n = done
            bar.refresh()

        await index.upsert(corpus, progress=on_progress)
        bar.close()
        ingest_s = time.perf_counter() - t0
        results: dict = {
            "ingest": {"documents": len(corpus), "embedded_texts": passages["n"], "seconds": round(ingest_s, 2),
                       "passages_per_s": round(passages["n"] / ingest_s, 1) if passages["n"] else None}
        }
        ranked: dict[str, list[list[str]]] = {m: [] for m in modes}
        latency: dict[str, list[float]] = {m: [] for m in modes}
        embed_ms: list[float] = []
        bar = _bar(len(queries), "queries", progress)
        for q in queries:
            t0 = time.perf_counter()
            vec = await index.embed_query(q.text)
            embed_ms.append((time.perf_counter() - t0) * 1e3)
            for mode in modes:
                docs, ms = await _ranked_docs(index, backend, q, vec, mode)
                ranked[mode].append(docs)
                latency[mode].append(ms)
            bar.update(1)
        bar.close()
        await index.close()
        for mode in modes:
            results[mode] = score_run(ranked[mode], queries, latency[mode])
        results["embedding"] = {"query_p50_ms": round(_percentile(embed_ms, 50), 2), "query_p99_ms": round(_percentile(embed_ms, 99), 2)}
        return results


async def _ranked_docs(index, backend: str, q: Query, vec: np.ndarray, mode: str) -> tuple[list[str], float]:
    locales = [q.locale] if q.locale else []
    if backend == "embedded":
        snap = index._snapshot
        t0 = time.perf_counter()
        hits = index.rank(snap, q.text, vec, locales=locales, tags=(), top_k=30, mode=mode)
        ms = (time.perf_counter() - t0) * 1e3
    else:
        t0 = time.perf_counter()
        hits = (await index.search(q.text, locales=locales, top_k=30, mode=mode, query_vector=vec)).hits
        ms = (time.perf_counter() - t0) * 1e3
    return list(dict.fromkeys(h.doc_id for h in hits))[: max(KS)], ms


def _make_index(backend: str, where: Path, embedder, elasticsearch_url: str):
    if backend == "embedded":
        from services.knowledge.index import EmbeddedIndex

        return EmbeddedIndex(where / "knowledge.db", embedder)
    if backend == "elasticsearch":
        if not elasticsearch_url:
            raise InvalidArgument("--backend elasticsearch needs --elasticsearch-url or ELASTICSEARCH_URL")
        from services.knowledge.elasticsearch import ElasticsearchIndex

        return ElasticsearchIndex(elasticsearch_url, embedder, index_prefix=f"kefu-eval-{int(time.time())}")
    raise InvalidArgument(f"unknown backend {backend!r}: use embedded or elasticsearch")


class _NoBar:
    total = n = 0

    def refresh(self) -> None: ...
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, unit=" items", dynamic_ncols=True, mininterval=0.5)


def format_table(results: dict, modes: Sequence[str]) -> str:
    cols = ["recall@1", "recall@3", "recall@5", "recall@10", "mrr", "p50_ms", "p99_ms", "n"]
    lines = ["| mode | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for mode in modes:
        r = results[mode]
        lines.append(f"| {mode} | " + " | ".join(str(r[c]) for c in cols) + " |")
    ing, emb = results["ingest"], results["embedding"]
    lines.append("")
    lines.append(f"ingest: {ing['documents']} documents, {ing['embedded_texts']} texts embedded in {ing['seconds']} s"
                 + (f" ({ing['passages_per_s']} passages/s)" if ing["passages_per_s"] else ""))
    lines.append(f"query embedding: p50 {emb['query_p50_ms']} ms, p99 {emb['query_p99_ms']} ms (not in the latencies above)")
    return "\n".join(lines)


def run_eval_retrieval(args) -> int:
    modes = list(MODES) if args.mode == "all" else [m.strip() for m in args.mode.split(",") if m.strip()]
    try:
        corpus = load_corpus(Path(args.corpus))
        queries = load_queries(Path(args.queries))
        results = asyncio.run(evaluate(
            corpus, queries, modes, backend=args.backend, index_dir=Path(args.index_dir) if args.index_dir else None,
            progress=not args.json and sys.stderr.isatty() or args.progress, elasticsearch_url=args.elasticsearch_url,
        ))
    except InvalidArgument as exc:
        print(f"kefu eval retrieval: {exc}", file=sys.stderr)
        return 2
    if args.json:
        extra = {"ingest": results["ingest"], "query_embedding": results["embedding"]}
        out = {**results[modes[0]], **extra} if len(modes) == 1 else {**{m: results[m] for m in modes}, **extra}
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(format_table(results, modes))
    return 0
