"""``kefu ingest`` and ``kefu eval retrieval``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from services.config import load_config


def add_knowledge_commands(sub, eval_sub) -> None:
    ingest = sub.add_parser(
        "ingest",
        help="add FAQs and documents to the knowledge base (CSV, JSONL, YAML, Markdown, text, HTML, PDF)",
        description=(
            "Read FAQ files (CSV/JSONL/YAML: id, question(s), answer, title, tags, locale) and documents "
            "(Markdown, text, HTML, PDF; one article per file, cut into passages) and add them to the knowledge base "
            "as one change (one new knowledge-base version). Every file is read and checked first: if any file is bad, "
            "each problem is printed and nothing is ingested (unless --skip-bad). By default the documents go to the "
            "running Knowledge service; --direct writes the local index instead (the service picks the change up)."
        ),
    )
    ingest.add_argument("paths", nargs="+", help="files or folders (folders are read recursively)")
    ingest.add_argument("--locale", choices=("zh", "en"), help="locale of entries that don't say (default: detected from the text)")
    ingest.add_argument("--tag", action="append", default=[], help="tag to add to every entry (repeatable)")
    ingest.add_argument("--skip-bad", action="store_true", help="ingest the good files even when some are bad")
    ingest.add_argument("--direct", action="store_true", help="write the local index in KEFU home instead of calling the service")
    ingest.add_argument("--delete", action="store_true", help="remove the entries these files define instead of adding them")
    ingest.add_argument("--target", help="Knowledge service address host:port (default from the configuration)")
    ingest.set_defaults(func=_cmd_ingest)

    ev = eval_sub.add_parser(
        "retrieval",
        help="recall@k, MRR and latency of knowledge retrieval on a corpus and queries",
        description=(
            "Ingest CORPUS (JSONL lines {\"id\", \"text\"}, optional \"title\", \"locale\") into a fresh index and rank "
            "every query of QUERIES (JSONL lines {\"query\", \"relevant\": [ids]}, optional \"locale\"). Prints recall@1/3/5/10, "
            "MRR and per-query search latency p50/p99 (query embedding excluded and reported apart)."
        ),
    )
    ev.add_argument("--corpus", required=True, help="corpus JSONL")
    ev.add_argument("--queries", required=True, help="queries JSONL")
    ev.add_argument("--backend", choices=("embedded", "elasticsearch"), default="embedded")
    ev.add_argument("--mode", default="hybrid", help="bm25, dense, hybrid, a comma-separated list, or all (default: hybrid)")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ev.add_argument("--index-dir", help="keep the index here (reused when it already holds this corpus) instead of a temporary folder")
    ev.add_argument("--elasticsearch-url", default=os.environ.get("ELASTICSEARCH_URL", ""), help="with --backend elasticsearch")
    ev.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")
    ev.set_defaults(func=_cmd_eval_retrieval)


def _cmd_eval_retrieval(args: argparse.Namespace) -> int:
    from services.knowledge.evaluation import run_eval_retrieval

    return run_eval_retrieval(args)


def _cmd_ingest(args: argparse.Namespace) -> int:
    from services.knowledge.documents import DocumentError, expand_paths, load_path

    cfg = load_config(args.config)
    try:
        files, skipped = expand_paths([Path(p) for p in args.paths])
    except DocumentError as exc:
        print(f"kefu ingest: {exc}", file=sys.stderr)
        return 2
    for path in skipped:
        print(f"skipped {path} (hidden, or not a supported file type)", file=sys.stderr)
    entries, bad = [], []
    for path, base in files:
        try:
            found = load_path(path, default_locale=args.locale, default_tags=args.tag, base=base)
        except DocumentError as exc:
            bad.append(str(exc))
            continue
        print(f"read {path}: {len(found)} entries", file=sys.stderr)
        entries += found
    for problem in bad:
        print(f"error: {problem}", file=sys.stderr)
    if bad and not args.skip_bad:
        print(f"kefu ingest: {len(bad)} bad file(s); nothing was ingested (fix them, or use --skip-bad)", file=sys.stderr)
        return 2
    if not entries:
        print("kefu ingest: nothing to ingest", file=sys.stderr)
        return 2
    ids = [e.id for e in entries]
    dupes = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dupes:
        print(f"kefu ingest: the same id comes from several files: {', '.join(dupes[:5])}; nothing was ingested", file=sys.stderr)
        return 2
    if args.direct:
        return asyncio.run(_ingest_direct(cfg, entries, args.delete))
    return asyncio.run(_ingest_remote(args.target or cfg.target("knowledge"), entries, args.delete, security=cfg.security))


async def _ingest_remote(target: str, entries, delete: bool, *, security=None) -> int:  # noqa: ANN001 - cfg.security
    from services.security import aio_channel

    import grpc
    from tqdm import tqdm

    from kefu.v1 import knowledge_pb2, knowledge_pb2_grpc
    from services.knowledge.servicer import to_document

    async with aio_channel(target, security, key=security.client_key if security is not None else "") as channel:
        stub = knowledge_pb2_grpc.KnowledgeStub(channel)
        try:
            if delete:
                reply = await stub.Delete(knowledge_pb2.DeleteRequest(ids=[e.id for e in entries]), timeout=120)
                print(f"deleted {reply.deleted} entries ({len(reply.not_found)} were not there); knowledge base version {reply.kb_version}")
                return 0
            bar = tqdm(total=len(entries), desc="ingest", unit=" docs", file=sys.stderr, dynamic_ncols=True)

            async def requests():
                for e in entries:
                    yield knowledge_pb2.IngestRequest(document=to_document(e))
                    bar.update(1)

            reply = await stub.Ingest(requests(), timeout=3600)
            bar.close()
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                print(f"kefu ingest: the Knowledge service at {target} is not reachable ({exc.details()}); "
                      "start kefu (`make up`) or use --direct", file=sys.stderr)
            else:
                print(f"kefu ingest: {exc.code().name}: {exc.details()}; nothing was ingested", file=sys.stderr)
            return 1
    print(f"ingested {reply.ingested} entries ({reply.chunks} passages); knowledge base version {reply.kb_version}")
    return 0


async def _ingest_direct(cfg, entries, delete: bool) -> int:
    from tqdm import tqdm

    from services.embedding import LocalEmbedder
    from services.knowledge.index import EmbeddedIndex

    index = EmbeddedIndex(cfg.home_path / "knowledge.db", LocalEmbedder())
    await index.open()
    if delete:
        deleted, not_found, version = await index.delete([e.id for e in entries])
        print(f"deleted {len(deleted)} entries ({len(not_found)} were not there); knowledge base version {version}")
        return 0
    before = index.version
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if total and bar is None:
            bar = tqdm(total=total, desc="embed", unit=" texts", file=sys.stderr, dynamic_ncols=True)
        if bar is not None:
            bar.n = done
            bar.refresh()

    version = await index.upsert(entries, progress=progress)
    if bar is not None:
        bar.close()
    await index.close()
    if version == before:
        print(f"no changes: all {len(entries)} entries are already in the knowledge base (version {version})")
    else:
        print(f"ingested {len(entries)} entries; knowledge base version {version}")
    return 0
