"""Knowledge over gRPC with the real embedder: ingest, search, delete, versions."""

from __future__ import annotations

import grpc
import pytest

from kefu.v1 import knowledge_pb2, knowledge_pb2_grpc


@pytest.fixture()
def knowledge(cfg):
    with grpc.insecure_channel(cfg.target("knowledge")) as ch:
        yield knowledge_pb2_grpc.KnowledgeStub(ch)


def _faq(doc_id: str, locale: str, questions: list[str], answer: str) -> knowledge_pb2.IngestRequest:
    return knowledge_pb2.IngestRequest(document=knowledge_pb2.KnowledgeDocument(
        id=doc_id, kind=knowledge_pb2.DOCUMENT_KIND_FAQ, title=doc_id, locale=locale, tags=["test"],
        questions=questions, answer=answer))


@pytest.mark.parametrize(
    "query, locale, expected",
    [("退货政策是怎样的", "zh", "returns-7day-zh"), ("how much is shipping", "en", "shipping-fees-en"), ("买东西要付多少运费", "zh", "shipping-fees-zh")],
)
def test_questions_hit_the_right_faq(knowledge, query, locale, expected):
    result = knowledge.Search(knowledge_pb2.SearchRequest(query=query, locales=[locale], top_k=3), timeout=30)
    assert result.hits[0].doc_id == expected, [h.doc_id for h in result.hits]
    assert all(h.locale == locale for h in result.hits)
    assert result.hits[0].citation.doc_id == expected
    assert result.hits[0].citation.kb_version == result.kb_version


def test_ingest_search_delete_round_trip(knowledge):
    before = knowledge.Search(knowledge_pb2.SearchRequest(query="x"), timeout=30).kb_version
    reply = knowledge.Ingest(iter([
        _faq("pets-policy-en", "en", ["Can I bring my dog to the pickup point?"], "Dogs on a leash are welcome at all pickup points."),
        _faq("pets-policy-zh", "zh", ["可以带狗去自提点吗？"], "自提点欢迎牵绳的狗狗。"),
    ]), timeout=60)
    assert reply.ingested == 2 and reply.kb_version == before + 1
    hit = knowledge.Search(knowledge_pb2.SearchRequest(query="may I bring my dog to pick up my parcel", tags=["test"]), timeout=30).hits[0]
    assert hit.doc_id == "pets-policy-en"
    assert hit.text.startswith("Dogs on a leash")

    gone = knowledge.Delete(knowledge_pb2.DeleteRequest(ids=["pets-policy-en", "pets-policy-zh", "never-was"]), timeout=30)
    assert gone.deleted == 2 and list(gone.not_found) == ["never-was"] and gone.kb_version == reply.kb_version + 1
    after = knowledge.Search(knowledge_pb2.SearchRequest(query="may I bring my dog", tags=["test"]), timeout=30)
    assert [h.doc_id for h in after.hits] == []


def test_a_bad_document_fails_the_whole_stream_and_nothing_is_ingested(knowledge):
    before = knowledge.Search(knowledge_pb2.SearchRequest(query="x"), timeout=30).kb_version
    with pytest.raises(grpc.RpcError) as err:
        knowledge.Ingest(iter([
            _faq("fine-en", "en", ["Is this fine?"], "Yes."),
            _faq("broken-fr", "fr", ["Est-ce bien ?"], "Non."),
        ]), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "broken-fr" in err.value.details() and "locale" in err.value.details()
    after = knowledge.Search(knowledge_pb2.SearchRequest(query="Is this fine?", tags=["test"]), timeout=30)
    assert after.kb_version == before and [h.doc_id for h in after.hits] == []


def test_search_modes_and_answerability_over_grpc(knowledge):
    covered = knowledge.Search(knowledge_pb2.SearchRequest(query="运费怎么算", locales=["zh"]), timeout=30)
    off_topic = knowledge.Search(knowledge_pb2.SearchRequest(query="明天会下雨吗", locales=["zh"]), timeout=30)
    for mode in (knowledge_pb2.RETRIEVAL_MODE_BM25, knowledge_pb2.RETRIEVAL_MODE_DENSE, knowledge_pb2.RETRIEVAL_MODE_HYBRID):
        found = knowledge.Search(knowledge_pb2.SearchRequest(query="买东西要付多少运费", locales=["zh"], mode=mode), timeout=30)
        assert found.hits[0].doc_id == "shipping-fees-zh", (mode, [h.doc_id for h in found.hits])
        # Closer in meaning than anything the knowledge has for a question it does not cover.
        assert found.hits[0].dense_score > off_topic.hits[0].dense_score + 0.1
    assert covered.answerable and not off_topic.answerable
    assert covered.answerability > off_topic.answerability


def test_kefu_ingest_sends_files_to_the_running_service(cfg, knowledge, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    faq = tmp_path / "extra.yaml"
    faq.write_text(
        "locale: en\ntags: [cli-test]\nentries:\n"
        "  - id: cli-gift-wrap-en\n    questions: ['Do you offer gift wrapping?']\n    answer: Gift wrapping costs 5 yuan per parcel.\n"
    )
    run = [sys.executable, "-m", "services.cli", "ingest", "--target", cfg.target("knowledge")]
    out = subprocess.run([*run, str(faq)], cwd=repo, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ingested 1 entries" in out.stdout
    hit = knowledge.Search(knowledge_pb2.SearchRequest(query="can you wrap my present", tags=["cli-test"]), timeout=30).hits[0]
    assert hit.doc_id == "cli-gift-wrap-en"

    bad = tmp_path / "bad.csv"
    bad.write_text("id,question\nx,no answer column\n")
    out = subprocess.run([*run, str(faq), str(bad)], cwd=repo, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "bad.csv" in out.stderr and "nothing was ingested" in out.stderr and "Traceback" not in out.stderr

    out = subprocess.run([*run, "--delete", str(faq)], cwd=repo, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "deleted 1" in out.stdout, out.stderr
