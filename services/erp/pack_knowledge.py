"""An imported store's own knowledge: its policy, ingested with ``kefu store import``.

τ-bench's retail store comes with its policy (``wiki.md`` next to its data folder). The
import ingests it as a document tagged ``pack:<format>`` (to the running Knowledge
service, or to the local index when kefu is not running; the service picks it up), and
Dialog searches that tag first while the store is active, so "can I exchange a shirt for
shoes?" is answered from that store's rules, not the demo store's FAQ. ``kefu store
reset`` removes it again. The ids ingested are recorded in ``<home>/pack_knowledge.json``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from services.config import KefuConfig


def pack_tag(store_format: str) -> str:
    return f"pack:{store_format}"


def find_policy(data_dir: Path) -> Path | None:
    """The policy next to an imported data folder (τ-bench keeps ``wiki.md`` one up)."""
    for candidate in (data_dir / "wiki.md", data_dir.parent / "wiki.md"):
        if candidate.is_file():
            return candidate
    return None


def _record(cfg: KefuConfig) -> Path:
    return cfg.home_path / "pack_knowledge.json"


def ingest_policy(cfg: KefuConfig, policy: Path, store_format: str) -> str:
    """Ingest ``policy`` for the store; returns a line saying where it went."""
    from services.knowledge.cli import _ingest_direct, _ingest_remote
    from services.knowledge.documents import load_path

    entries = load_path(policy, default_locale="en", default_tags=[pack_tag(store_format)], base=policy.parent)
    ids = [e.id for e in entries]
    if _service_up(cfg):
        if asyncio.run(_ingest_remote(cfg.target("knowledge"), entries, False, security=cfg.security)) != 0:
            raise RuntimeError(f"the Knowledge service did not take {policy}")
        where = "the Knowledge service"
    else:
        asyncio.run(_ingest_direct(cfg, entries, False))
        where = "the local index (the Knowledge service picks it up)"
    _record(cfg).parent.mkdir(parents=True, exist_ok=True)
    _record(cfg).write_text(json.dumps({"format": store_format, "ids": ids}), encoding="utf-8")
    return f"knowledge: {policy.name} ({len(ids)} document) ingested into {where}, tagged {pack_tag(store_format)}"


def remove_policy(cfg: KefuConfig) -> str:
    """Remove what the last import ingested; "" when there was nothing."""
    from services.knowledge.cli import _ingest_direct, _ingest_remote
    from services.knowledge.entries import KnowledgeEntry

    record = _record(cfg)
    if not record.is_file():
        return ""
    ids = json.loads(record.read_text(encoding="utf-8")).get("ids", [])
    stubs = [KnowledgeEntry(id=i, kind="article", title="", locale="en") for i in ids]
    if not (_service_up(cfg) and asyncio.run(_ingest_remote(cfg.target("knowledge"), stubs, True, security=cfg.security)) == 0):
        asyncio.run(_ingest_direct(cfg, stubs, True))
    record.unlink()
    return f"knowledge: removed the imported store's policy ({', '.join(ids)})"


def _service_up(cfg: KefuConfig) -> bool:
    from services.stack import grpc_healthy

    return grpc_healthy(cfg.target("knowledge"), security=cfg.security)
