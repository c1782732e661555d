"""What the Elasticsearch tests share: a hash-seeded fake embedder, a few knowledge
entries, and the metadata and body of an Elasticsearch error answer."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig

from services.knowledge.entries import KnowledgeEntry

DIMS = 384


class FakeEmbedder:
    """Hash-seeded random unit vectors (equal prefixed texts, equal vectors). Only for
    body-shape and bookkeeping tests: these vectors carry no meaning."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    @staticmethod
    def vector(text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
        return v / np.linalg.norm(v)

    def _embed(self, prefix: str, texts) -> np.ndarray:
        texts = list(texts)
        self.calls.append((prefix, texts))
        if not texts:
            return np.zeros((0, DIMS), np.float32)
        return np.stack([self.vector(prefix + t) for t in texts])

    async def embed_queries(self, texts) -> np.ndarray:
        return self._embed("query: ", texts)

    async def embed_passages(self, texts) -> np.ndarray:
        return self._embed("passage: ", texts)

    async def close(self) -> None:
        pass


def shipping_en() -> KnowledgeEntry:
    return KnowledgeEntry(
        id="shipping-fees-en", kind="faq", title="Shipping fees", locale="en", tags=["shipping", "fees"],
        questions=["How much is shipping?", "  ", "What does delivery cost?"],
        answer="Standard shipping costs 8 yuan; orders over 99 yuan ship free.",
    )


def returns_zh() -> KnowledgeEntry:
    return KnowledgeEntry(
        id="returns-7day-zh", kind="faq", title="七天无理由退货", locale="zh", tags=["returns"],
        questions=["退货政策是怎样的", "可以退货吗"], answer="签收次日起 7 天内可以申请无理由退货，商品需保持完好。",
    )


def warranty_article() -> KnowledgeEntry:
    return KnowledgeEntry(
        id="warranty-guide-zh", kind="article", title="保修说明", locale="zh", tags=["warranty"],
        body="# 保修说明\n\n电子产品享受一年保修。\n\n## 免费维修\n\n保修期内非人为损坏免费维修。\n\n## 付费维修\n\n人为损坏需要支付维修费用。",
    )


def asdict_entry(entry: KnowledgeEntry, **changes) -> dict:
    return dataclasses.asdict(dataclasses.replace(entry, **changes))


# -- error answers ----------------------------------------------------------------
def api_meta(status: int) -> ApiResponseMeta:
    return ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                           node=NodeConfig("http", "localhost", 9200))


def es_error(status: int, kind: str, reason: str) -> dict:
    return {"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status}
