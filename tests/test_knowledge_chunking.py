"""Article chunking (services/knowledge/chunking.py): sentence ends in Chinese and
English, chunk sizes, headings, code fences. Pure Python: no models, no servers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.knowledge.chunking import chunk_text, split_sentences
from services.knowledge.entries import KnowledgeEntry

FIXTURES = Path(__file__).parent / "fixtures" / "knowledge"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# --- sentences -------------------------------------------------------------------------------------------------


def test_chinese_sentence_ends_keep_closing_quotes():
    text = "退货需要在七天内申请。请保留原包装！运费谁出？质量问题由我们承担；其他情况由您承担……他说：“好的。”然后挂了电话。"
    assert split_sentences(text) == [
        "退货需要在七天内申请。",
        "请保留原包装！",
        "运费谁出？",
        "质量问题由我们承担；",
        "其他情况由您承担……",
        "他说：“好的。”",
        "然后挂了电话。",
    ]


def test_ascii_punctuation_after_chinese_ends_sentences():
    assert split_sentences("好的!谢谢?再见") == ["好的!", "谢谢?", "再见"]
    # ...but not inside a URL.
    assert split_sentences("请访问https://shop.example.com/x?id=1然后填写表格。好的") == [
        "请访问https://shop.example.com/x?id=1然后填写表格。",
        "好的",
    ]


def test_english_abbreviations_decimals_urls_and_emails_do_not_end_sentences():
    text = (
        "Mr. Smith ordered item No. 5 weighing 3.5 kg. Refunds take approx. five days, e.g. via PayPal. "
        "See https://shop.example.com/returns.html for details. Write to help@shop.example.com. "
        'J. Smith said "Fine." Then he left! Really? Yes... see p. 12 in the manual.'
    )
    assert split_sentences(text) == [
        "Mr. Smith ordered item No. 5 weighing 3.5 kg.",
        "Refunds take approx. five days, e.g. via PayPal.",
        "See https://shop.example.com/returns.html for details.",
        "Write to help@shop.example.com.",
        'J. Smith said "Fine."',
        "Then he left!",
        "Really?",
        "Yes... see p. 12 in the manual.",
    ]


def test_no_is_a_sentence_when_no_number_follows():
    assert split_sentences("Is that all? No. We also ship abroad.") == ["Is that all?", "No.", "We also ship abroad."]


def test_list_items_and_soft_wraps():
    text = "Returns are easy.\nJust follow\nthese steps:\n- Pack the item.\n- Print the label.\n  Stick it on the box.\n1. 登录账户。\n2. 点击退货。"
    assert split_sentences(text) == [
        "Returns are easy.",
        "Just follow these steps:",
        "- Pack the item.",
        "- Print the label.",
        "Stick it on the box.",
        "1. 登录账户。",
        "2. 点击退货。",
    ]


def test_whitespace_is_normalised():
    assert split_sentences("退货 政策\n说明。  Two   spaces\there.\u200b") == ["退货政策说明。", "Two spaces here."]


# --- chunks ----------------------------------------------------------------------------------------------------

_ZH_PARAGRAPH = (
    "我们支持七天无理由退货。商品需要保持完好，吊牌和配件齐全。定制商品不支持无理由退货。"
    "质量问题的退货运费由我们承担，其他情况的运费由顾客承担。我们收到退货后会在两个工作日内检查商品。"
    "检查通过后，退款会原路退回。银行卡通常需要三到五个工作日到账。"
)
_EN_PARAGRAPH = (
    "We ship from our warehouse every working day. Orders placed before 2 p.m. leave the same day. "
    "Standard delivery takes 2 to 4 working days, e.g. to Berlin or Munich. Express delivery costs 9.90 EUR. "
    "If a parcel is lost, write to help@shop.example.com and we send a replacement. "
    "Parcels to Switzerland need a customs declaration, which we fill in for you."
)


@pytest.mark.parametrize("max_chars", [40, 60, 100, 400])
@pytest.mark.parametrize("text", [_ZH_PARAGRAPH, _EN_PARAGRAPH, _ZH_PARAGRAPH + "\n\n" + _EN_PARAGRAPH])
def test_chunks_fit_and_keep_every_character_in_order(text, max_chars):
    chunks = chunk_text(text, max_chars=max_chars, min_chars=10)
    assert chunks and all(0 < len(c) <= max_chars for c in chunks)
    assert _squash("".join(chunks)) == _squash(text)


def test_chunks_end_at_sentence_boundaries():
    sentences = split_sentences(_ZH_PARAGRAPH)
    for chunk in chunk_text(_ZH_PARAGRAPH, max_chars=60, min_chars=10):
        assert chunk.endswith("。")
        # every chunk is a run of whole sentences
        assert any("".join(sentences[i:j]) == chunk for i in range(len(sentences)) for j in range(i + 1, len(sentences) + 1))
    for chunk in chunk_text(_EN_PARAGRAPH, max_chars=120, min_chars=10):
        assert chunk[-1] in ".!?"
        assert not chunk.endswith(("p.m.", "e.g."))


def test_small_text_is_one_chunk_and_paragraphs_pack():
    assert chunk_text(_ZH_PARAGRAPH) == [_ZH_PARAGRAPH]
    # Paragraphs are chunked separately, short ones joined to a neighbour with a line break.
    assert chunk_text("Short one.\n\nShort two.") == ["Short one.\nShort two."]
    first, second = "A" * 30 + " is long enough to stand alone here.", "B" * 30 + " is long enough to stand alone too."
    assert chunk_text(f"{first}\n\n{second}", max_chars=100, min_chars=20) == [first, second]


def test_short_trailing_chunk_takes_sentences_back():
    text = "".join(f"这是第{i}句话，用来测试分块。" for i in range(1, 6))  # 5 sentences of 14 characters
    # Greedy packing alone leaves a 14-character tail.
    assert [len(c) for c in chunk_text(text, max_chars=60, min_chars=0)] == [56, 14]
    chunks = chunk_text(text, max_chars=60, min_chars=30)
    assert [len(c) for c in chunks] == [42, 28]  # one sentence moved back; a second would leave 28 < 30 before it
    assert "".join(chunks) == text


def test_long_chinese_sentence_is_cut_at_clause_marks():
    sentence = "，".join(f"第{i}个条件必须满足" for i in range(1, 21)) + "。"
    chunks = chunk_text(sentence, max_chars=50, min_chars=10)
    assert len(chunks) > 1 and all(len(c) <= 50 for c in chunks)
    assert all(c.endswith("，") for c in chunks[:-1]) and chunks[-1].endswith("。")
    assert "".join(chunks) == sentence


def test_long_english_sentence_is_cut_without_breaking_words():
    words = [f"parcel{i}" for i in range(60)]
    sentence = " ".join(words) + "."
    chunks = chunk_text(sentence, max_chars=45, min_chars=5)
    assert len(chunks) > 1 and all(len(c) <= 45 for c in chunks)
    for chunk in chunks:
        assert all(w.rstrip(".") in words for w in chunk.split())
    assert " ".join(chunks) == sentence
    # A single "word" longer than the limit has to be cut hard.
    token = "x" * 100
    assert chunk_text(token, max_chars=40) == [token[:40], token[40:80], token[80:]]


def test_headings_start_chunks_and_are_prefixed():
    text = (FIXTURES / "guide_zh.md").read_text(encoding="utf-8").split("---", 2)[2]
    chunks = chunk_text(text)
    assert chunks[0].startswith("退货指南: 本指南说明")
    assert chunks[1].startswith("退货指南 > 退货条件: 商品自签收之日起七天内可以退货。")
    assert chunks[2].startswith("退货指南 > 办理步骤: 1. 登录账户")
    assert "\n2. 选择要退的商品" in chunks[2]  # list items stay on their own lines
    assert chunks[3].startswith("退货指南 > 退款: ")
    assert not any("#" in c for c in chunks)
    # A heading ending in punctuation gets no colon; sibling headings replace each other.
    md = "# FAQ\n\n## How do I return?\n\nPack it.\n\n## Shipping\n\nWe ship daily."
    assert chunk_text(md) == ["FAQ > How do I return? Pack it.", "FAQ > Shipping: We ship daily."]


def test_heading_prefix_counts_towards_max_chars():
    text = "# 退货政策\n\n## 运费说明\n\n" + _ZH_PARAGRAPH
    chunks = chunk_text(text, max_chars=60, min_chars=10)
    assert len(chunks) > 1
    assert all(c.startswith("退货政策 > 运费说明: ") and len(c) <= 60 for c in chunks)


def test_code_fences_are_kept_whole():
    code = "curl -X POST https://shop.example.com/api/returns \\\n  -d order=1234 \\\n  -d reason=size"
    md = f"# API\n\nCreate a return with one request.\n\n```bash\n{code}\n```\n\nThe reply holds the label."
    chunks = chunk_text(md, max_chars=200)
    assert any(code in c for c in chunks)
    assert not any("```" in c for c in chunks)


def test_chunking_is_deterministic_and_never_empty():
    text = (FIXTURES / "shipping_en.txt").read_text(encoding="utf-8")
    assert chunk_text(text, max_chars=120) == chunk_text(text, max_chars=120)
    assert all(c.strip() == c and c for c in chunk_text(text, max_chars=120))
    assert chunk_text("") == [] and chunk_text(" \n\n \t") == []
    assert chunk_text("# 只有标题") == ["只有标题"]
    assert chunk_text("---") == ["---"]
    with pytest.raises(ValueError):
        chunk_text("x", max_chars=5)


def test_article_entries_use_the_chunker():
    entry = KnowledgeEntry(id="a", kind="article", title="t", locale="zh", body="# 标题\n\n" + _ZH_PARAGRAPH)
    assert entry.chunks() == [(str(i), c) for i, c in enumerate(chunk_text(entry.body))]
