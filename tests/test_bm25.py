"""Lexical retrieval pieces of the knowledge index (hybrid search builds on them)."""

from __future__ import annotations

import numpy as np

from services.knowledge.analysis import analyze
from services.knowledge.bm25 import BM25Index

DOCS = [
    ("returns-zh", "七天无理由退货：签收次日起 7 天内可以申请退货，商品需保持完好。"),
    ("shipping-zh", "普通快递运费 8 元，订单实付满 99 元包邮，偏远地区运费 15 元。"),
    ("invoice-zh", "订单完成后可以在订单详情页申请电子发票，支持增值税专用发票。"),
    ("returns-en", "Returns are accepted within 7 days of delivery if the item is unused."),
    ("shipping-en", "Standard shipping costs 8 yuan; orders over 99 yuan ship free."),
    ("invoices-en", "You can request an electronic invoice from the order details page."),
]


def test_analyzer_segments_chinese_and_stems_english():
    zh = analyze("我想申请退货，运费怎么算？")
    assert "退货" in zh and "运费" in zh and "申请" in zh
    assert "的" not in analyze("我的订单") and "怎么" not in zh  # stop words go
    en = analyze("Returning the shoes: how are returns shipped?")
    assert en.count("return") == 2 and "ship" in en and "the" not in en
    mixed = analyze("我的order还没到")
    assert "order" in mixed and any("到" in t for t in mixed)
    assert analyze("ＡＢＣ　Shipping") == analyze("abc shipping")  # full width folds


def test_bm25_ranks_the_matching_document_first():
    index = BM25Index().build(DOCS)
    assert index.search("怎么申请退货", 3)[0][0] == "returns-zh"
    assert index.search("满多少包邮", 3)[0][0] == "shipping-zh"
    assert index.search("how much does shipping cost", 3)[0][0] == "shipping-en"
    assert index.search("invoice please", 3)[0][0] == "invoices-en"
    assert index.search("量子力学", 3) == []  # no shared term, no hit


def test_bm25_scores_follow_the_formula():
    index = BM25Index(k1=1.2, b=0.75, analyzer=str.split).build([("a", "x y y"), ("b", "y z"), ("c", "z z z z")])
    n, avg = 3, (3 + 2 + 4) / 3
    idf_y = np.log(1 + (n - 2 + 0.5) / (2 + 0.5))
    expected_a = idf_y * 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 3 / avg))
    assert np.isclose(index.scores("y")[0], expected_a, rtol=1e-5)
    assert index.scores("y")[2] == 0


def test_mask_limits_the_candidates():
    index = BM25Index().build(DOCS)
    only_en = np.array([doc_id.endswith("-en") for doc_id, _ in DOCS])
    hits = index.search("shipping 运费", 5, mask=only_en)
    assert hits and all(doc_id.endswith("-en") for doc_id, _ in hits)
