"""A process that keeps writing batches to an embedded knowledge index, for the
kill-during-ingest test: ``python -m tests.knowledge_writer DB_PATH``.

Batch n upserts 40 FAQ entries ``b<n>-<i>`` and deletes batch n-2's; after each
commit it prints ``committed <n> <version>``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from services.embedding import LocalEmbedder
from services.knowledge.entries import KnowledgeEntry
from services.knowledge.index import EmbeddedIndex

BATCH = 40


def batch(n: int) -> list[KnowledgeEntry]:
    return [
        KnowledgeEntry(
            id=f"b{n}-{i}", kind="faq", title=f"batch {n} entry {i}", locale="en" if i % 2 else "zh", tags=[f"batch{n}"],
            questions=[f"question {i} of batch {n}?", f"第 {n} 批的第 {i} 个问题"], answer=f"Answer {i} of batch {n}. 第 {n} 批答案 {i}。",
        )
        for i in range(BATCH)
    ]


async def main(path: Path) -> None:
    index = EmbeddedIndex(path, LocalEmbedder())
    await index.open()
    n = 0
    while True:
        n += 1
        await index.upsert(batch(n))
        if n > 2:
            await index.delete([e.id for e in batch(n - 2)])
        print(f"committed {n} {index.version}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
