"""The embedded knowledge index with the real embedder (multilingual-e5 in process):
hybrid ranking, filters, versions, persistence, other writers, a writer killed
mid-ingest, answerability and the retrieval eval CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from services.embedding import LocalEmbedder
from services.errors import InvalidArgument
from services.knowledge.documents import expand_paths, load_path
from services.knowledge.entries import KnowledgeEntry, faq_dense
from services.knowledge.index import EmbeddedIndex
from tests.knowledge_writer import BATCH, batch

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="module")
def embedder():
    return LocalEmbedder()


def fixture_entries() -> list[KnowledgeEntry]:
    files, _ = expand_paths([FIXTURES / "knowledge"])
    return [e for path, base in files for e in load_path(path, base=base)]


@pytest.fixture()
async def index(tmp_path, embedder):
    idx = EmbeddedIndex(tmp_path / "knowledge.db", embedder)
    await idx.open()
    await idx.upsert(fixture_entries())
    yield idx
    await idx.close()


def faq(doc_id: str, locale: str, questions: list[str], answer: str, tags=("test",)) -> KnowledgeEntry:
    return KnowledgeEntry(id=doc_id, kind="faq", title=questions[0], locale=locale, tags=list(tags), questions=questions, answer=answer)


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
@pytest.mark.parametrize(
    "query, locale, expected_prefix",
    [
        ("买了东西不想要了，多少天内可以退", "zh", "returns"),
        ("How many days does standard delivery within Germany take?", "en", "shipping"),
        ("怎么开发票", "zh", "invoice"),
    ],
)
async def test_questions_hit_the_right_entry_in_every_mode(index, mode, query, locale, expected_prefix):
    result = await index.search(query, locales=[locale], top_k=3, mode=mode)
    assert result.hits, f"{mode}: no hit for {query!r}"
    top = result.hits[0]
    haystack = f"{top.doc_id} {top.title} {top.text}".lower()
    words = {"returns": ("return", "退"), "shipping": ("ship", "deliver", "配送", "运"), "invoice": ("invoice", "发票")}[expected_prefix]
    assert any(w in haystack for w in words), (mode, query, [(h.doc_id, h.title) for h in result.hits])
    assert all(h.locale == locale for h in result.hits)
    assert result.kb_version == index.version


async def test_hits_carry_citation_fields_and_both_scores(index):
    result = await index.search("退货需要什么条件", locales=["zh"], top_k=3)
    for hit in result.hits:
        assert hit.doc_id and hit.chunk_id != "" and hit.title and hit.text
        assert 0.0 < hit.dense_score <= 1.0
    assert result.hits[0].lexical_score > 0  # shares words with the query


async def test_an_faq_entry_scores_by_its_best_question_and_its_answer(tmp_path, embedder):
    """An FAQ entry's dense score blends its best question's cosine with its answer's
    (faq_dense); a document passage scores by its own cosine."""
    idx = EmbeddedIndex(tmp_path / "knowledge.db", embedder)
    await idx.open()
    try:
        entry = faq("fees-en", "en", ["How much is shipping?", "Do you charge for delivery?"], "Shipping is free from 99 yuan; below that it costs 8 yuan.")
        article = KnowledgeEntry(id="doc:guide", kind="article", title="Guide", locale="en", body="Parcels leave the warehouse within 48 hours.")
        await idx.upsert([entry, article])
        query = "what does delivery cost"
        q = (await embedder.embed_queries([query]))[0]
        questions = await embedder.embed_queries(entry.questions)
        answer, passage = await embedder.embed_passages([entry.answer, article.body])
        hits = {h.doc_id: h for h in (await idx.search(query, locales=["en"], top_k=2, mode="dense")).hits}
        assert hits["fees-en"].dense_score == pytest.approx(faq_dense(float(max(questions @ q)), float(answer @ q)), abs=1e-5)
        assert hits["fees-en"].matched_question == entry.questions[int(np.argmax(questions @ q))]
        assert hits["doc:guide"].dense_score == pytest.approx(float(passage @ q), abs=1e-5)
    finally:
        await idx.close()


CORPORATE = (
    "# Corporate orders\n\n## Prices\n\nCorporate prices apply from 10 units of the same item in one order. "
    "For 10-49 units you get 3% off, for 50-199 units 5% off. Items printed with your company logo need at least "
    "50 units per design, and production takes 10 working days. Invoices for companies are issued monthly."
)


async def test_a_passage_is_also_found_by_each_of_its_sentences(tmp_path, embedder):
    """A customer asks about one sentence of a passage that says several things: the
    passage scores by its best key, the passage itself or one of its sentences under the
    headings (KnowledgeEntry.sentence_keys)."""
    idx = EmbeddedIndex(tmp_path / "knowledge.db", embedder)
    await idx.open()
    try:
        article = KnowledgeEntry(id="doc:corporate", kind="article", title="Corporate", locale="en", body=CORPORATE)
        await idx.upsert([article])
        (passage,) = [t for _, t in article.chunks()]
        (keys,) = article.sentence_keys()
        assert len(keys) == 4 and all(k.startswith("Corporate orders > Prices: ") for k in keys)
        assert keys[2] == "Corporate orders > Prices: Items printed with your company logo need at least 50 units per design, and production takes 10 working days."
        query = "can you print our logo on 40 notebooks?"
        q = (await embedder.embed_queries([query]))[0]
        vectors = await embedder.embed_passages([passage, *keys])
        hit = (await idx.search(query, locales=["en"], top_k=1, mode="dense")).hits[0]
        assert hit.doc_id == "doc:corporate" and hit.matched_question == ""
        assert hit.dense_score == pytest.approx(float(max(vectors @ q)), abs=1e-5)
        assert hit.dense_score > float(vectors[0] @ q)  # a sentence is closer than the whole passage
    finally:
        await idx.close()


async def test_an_index_keyed_without_sentences_is_keyed_again_at_open(tmp_path, embedder):
    """Passages stored by an older kefu (one key each) get their sentence keys when the
    index opens."""
    path = tmp_path / "knowledge.db"
    idx = EmbeddedIndex(path, embedder)
    await idx.open()
    article = KnowledgeEntry(id="doc:corporate", kind="article", title="Corporate", locale="en", body=CORPORATE)
    await idx.upsert([article])
    await idx.close()
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM search_keys WHERE seq > 0")
        conn.execute("DELETE FROM settings WHERE key='keys'")  # an older kefu recorded no key layout
    again = EmbeddedIndex(path, embedder)
    await again.open()
    try:
        assert [len(k) for k in again._snapshot.docs["doc:corporate"].keys] == [5]
    finally:
        await again.close()


async def test_upsert_delete_and_versions(index):
    v0 = index.version
    v1 = await index.upsert([faq("pets-en", "en", ["Can I bring my dog to the pickup point?"], "Dogs on a leash are welcome.")])
    assert v1 == v0 + 1
    assert await index.upsert([faq("pets-en", "en", ["Can I bring my dog to the pickup point?"], "Dogs on a leash are welcome.")]) == v1
    hit = (await index.search("may I take my puppy when collecting a parcel", tags=["test"], top_k=1)).hits[0]
    assert hit.doc_id == "pets-en" and hit.matched_question.startswith("Can I bring my dog")
    v2 = await index.upsert([faq("pets-en", "en", ["Can I bring my dog to the pickup point?"], "Only guide dogs are allowed.")])
    assert v2 == v1 + 1
    assert (await index.search("dog at the pickup point", tags=["test"], top_k=1)).hits[0].text == "Only guide dogs are allowed."
    deleted, not_found, v3 = await index.delete(["pets-en", "never-was"])
    assert deleted == ["pets-en"] and not_found == ["never-was"] and v3 == v2 + 1
    assert (await index.search("dog at the pickup point", tags=["test"], top_k=3)).hits == []


async def test_bad_entries_are_rejected_and_nothing_is_written(index):
    v0, n0 = index.version, len(index)
    with pytest.raises(InvalidArgument, match="locale"):
        await index.upsert([faq("ok-1", "en", ["fine?"], "Fine."), faq("bad-1", "fr", ["mauvais?"], "Non.")])
    with pytest.raises(InvalidArgument, match="twice"):
        await index.upsert([faq("dup", "en", ["a?"], "A."), faq("dup", "en", ["b?"], "B.")])
    assert index.version == v0 and len(index) == n0 and index.get("ok-1") is None


async def test_filters_by_locale_and_tag(index):
    await index.upsert([
        faq("gift-zh", "zh", ["礼品卡可以退吗"], "礼品卡一经售出不退不换。", tags=["giftcards"]),
        faq("gift-en", "en", ["Can I return a gift card?"], "Gift cards cannot be returned.", tags=["giftcards"]),
    ])
    for mode in ("hybrid", "bm25", "dense"):
        only = await index.search("gift card 礼品卡 return", tags=["giftcards"], top_k=10, mode=mode)
        assert {h.doc_id for h in only.hits} == {"gift-zh", "gift-en"}, mode
        en = await index.search("gift card 礼品卡 return", tags=["giftcards"], locales=["en"], top_k=10, mode=mode)
        assert [h.doc_id for h in en.hits] == ["gift-en"], mode
    assert (await index.search("gift card", tags=["no-such-tag"], top_k=5)).hits == []


async def test_articles_are_chunked_and_cited_by_chunk(index):
    body = "\n\n".join(f"第{i}段。" + "这是一段关于会员积分规则的说明，" * 8 + f"第{i}段的结尾提到积分在{i}月清零。" for i in range(1, 6))
    await index.upsert([KnowledgeEntry(id="doc:points", kind="article", title="会员积分规则", locale="zh", body=body)])
    hits = (await index.search("积分在3月清零吗", locales=["zh"], top_k=5)).hits
    ours = [h for h in hits if h.doc_id == "doc:points"]
    assert len({h.chunk_id for h in ours}) > 1  # several chunks of the one article
    assert "3月清零" in ours[0].text


async def test_reopening_gives_the_same_index_without_embedding_again(tmp_path, index):
    path = index._path
    query = "运费怎么算"
    before = await index.search(query, top_k=3)

    class NoEmbedding(LocalEmbedder):
        async def embed_passages(self, texts):
            raise AssertionError(f"re-embedded {len(texts)} passages on open")

    again = EmbeddedIndex(path, NoEmbedding())
    await again.open()
    after = await again.search(query, top_k=3)
    assert again.version == index.version and len(again) == len(index)
    assert [(h.doc_id, h.chunk_id) for h in after.hits] == [(h.doc_id, h.chunk_id) for h in before.hits]
    assert [round(h.score, 5) for h in after.hits] == [round(h.score, 5) for h in before.hits]


async def test_a_change_by_another_process_is_picked_up_without_restart(tmp_path, embedder):
    path = tmp_path / "shared.db"
    reader = EmbeddedIndex(path, embedder, watch_s=0.2)
    await reader.open()
    writer = EmbeddedIndex(path, embedder)
    await writer.open()
    version = await writer.upsert([faq("late-en", "en", ["Do you deliver on Sundays?"], "Yes, on Sundays too.")])
    deadline = time.monotonic() + 10
    while reader.version != version and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert reader.version == version
    assert (await reader.search("sunday delivery", top_k=1)).hits[0].doc_id == "late-en"
    await reader.close()


def _expected_batches(version: int) -> set[int]:
    """Which batches tests/knowledge_writer.py leaves after ``version`` commits."""
    present: set[int] = set()
    ops, n = 0, 0
    while ops < version:
        n += 1
        present.add(n)
        ops += 1
        if n > 2 and ops < version:
            present.discard(n - 2)
            ops += 1
    return present


@pytest.mark.parametrize("delay_s", [1.5, 2.6, 3.7])
async def test_a_writer_killed_mid_ingest_leaves_the_last_committed_version(tmp_path, embedder, delay_s):
    path = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, "-m", "tests.knowledge_writer", str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        first = proc.stdout.readline()  # the first batch is committed
        assert first.startswith("committed 1"), first
        time.sleep(delay_s)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    index = EmbeddedIndex(path, embedder)
    await index.open()
    version = index.version
    assert version >= 1
    batches = {int(doc_id.split("-")[0][1:]) for doc_id in index._snapshot.docs}
    assert batches == _expected_batches(version), (version, sorted(batches))
    assert len(index) == BATCH * len(batches)  # whole batches only
    assert index.chunk_count == len(index)
    newest = max(batches)
    probe = batch(newest)[3]
    hits = (await index.search(probe.questions[0], tags=[f"batch{newest}"], top_k=1)).hits
    assert hits and hits[0].doc_id == probe.id


async def test_answerability_separates_covered_from_uncovered_questions(index):
    covered = [("退货要满足什么条件", "zh"), ("发票怎么开", "zh"), ("How long does shipping take?", "en"), ("Can I return an item?", "en")]
    uncovered = [("今天股市涨了吗", "zh"), ("推荐一部好看的电影", "zh"), ("Who won the football match yesterday?", "en"),
                 ("What is the capital of Australia?", "en")]
    cov = [(await index.search(q, locales=[loc])).answerability for q, loc in covered]
    unc = [(await index.search(q, locales=[loc])).answerability for q, loc in uncovered]
    assert min(cov) > max(unc), (cov, unc)
    assert all(0.0 <= p <= 1.0 for p in cov + unc)


async def test_every_hit_is_rated_as_if_it_were_the_answer(index):
    """Each hit carries the probability that it answers, were it the one given: the first's is
    the response's, and the entry that answers rates higher than the rest wherever it is ranked."""
    found = await index.search("退货要满足什么条件", locales=["zh"], top_k=5)
    assert len(found.hits) >= 2 and found.hits[0].answerability == found.answerability
    assert all(0.0 <= h.answerability <= 1.0 for h in found.hits)
    assert found.hits[0].answerability > max(h.answerability for h in found.hits[1:])
    # The same hits in another order rate the same: a hit's rating does not depend on its rank.
    second = found.hits[1]
    rated = second.answerability
    index._answerability.judge("退货要满足什么条件", [second, found.hits[0], *found.hits[2:]])
    assert abs(second.answerability - rated) < 1e-9


def _eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", "eval", "retrieval", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_eval_cli_reports_the_known_recall(tmp_path):
    queries = (FIXTURES / "retrieval" / "queries.jsonl").read_text().splitlines()
    # A query whose relevant document is not in the corpus can never be found: recall is at most 8/9.
    queries.append(json.dumps({"query": "Do you sell concert tickets?", "relevant": ["tickets-en"]}))
    qfile = tmp_path / "queries.jsonl"
    qfile.write_text("\n".join(queries) + "\n")
    out = _eval("--corpus", str(FIXTURES / "retrieval" / "corpus.jsonl"), "--queries", str(qfile), "--mode", "hybrid", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["n"] == 9
    assert report["recall@10"] == round(8 / 9, 4) and report["recall@3"] == round(8 / 9, 4)
    assert report["recall@1"] <= report["recall@3"] <= report["recall@5"] <= report["recall@10"]
    assert 0 < report["mrr"] <= report["recall@10"]
    assert report["p50_ms"] > 0 and report["p99_ms"] >= report["p50_ms"]
    table = _eval("--corpus", str(FIXTURES / "retrieval" / "corpus.jsonl"), "--queries", str(qfile), "--mode", "all")
    assert table.returncode == 0 and "| bm25 |" in table.stdout and "| dense |" in table.stdout and "| hybrid |" in table.stdout


def test_eval_cli_rejects_bad_input_clearly(tmp_path):
    bad = tmp_path / "corpus.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b"\n')
    out = _eval("--corpus", str(bad), "--queries", str(FIXTURES / "retrieval" / "queries.jsonl"))
    assert out.returncode == 2 and "line 2" in out.stderr and "Traceback" not in out.stderr
