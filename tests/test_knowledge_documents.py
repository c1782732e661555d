"""Knowledge files into entries (services/knowledge/documents.py): locales, FAQ files,
documents, paths and errors; chunking is ``test_knowledge_chunking.py``. Pure Python:
no models, no servers."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest

from services.errors import InvalidArgument
from services.knowledge.chunking import split_sentences
from services.knowledge.documents import (
    DocumentError,
    detect_locale,
    expand_paths,
    iter_paths,
    load_path,
    load_paths,
    normalise_locale,
)

FIXTURES = Path(__file__).parent / "fixtures" / "knowledge"


# --- locale ----------------------------------------------------------------------------------------------------


def test_locale_detection_and_normalisation():
    assert detect_locale("多久内可以退货？") == "zh"
    assert detect_locale("Where is my parcel?") == "en"
    assert detect_locale("我的order还没到") == "zh"  # 5 Han of 10 letters
    assert detect_locale("Please check my iPhone 15 order 订单") == "en"  # 2 Han of 24 letters
    assert detect_locale("12345 ???") == "en"
    assert [normalise_locale(x) for x in ("zh-CN", "zh_Hans", "ZH", "en-US")] == ["zh", "zh", "zh", "en"]


# --- FAQ files -------------------------------------------------------------------------------------------------


def test_csv_with_bom_multi_question_cells_and_tags():
    entries = load_path(FIXTURES / "faq.csv")
    assert [e.id for e in entries] == ["ret-window", "ship-cost", entries[2].id]
    ret, ship, invoice = entries
    assert ret.kind == "faq" and ret.locale == "zh" and ret.title == "退货期限"
    assert ret.questions == ["多久内可以退货？", "收到货后还能退吗", "退货期限是几天"]
    assert ret.tags == ["退货", "售后"]
    assert ship.title == "Who pays for return shipping?"  # no title: the first question
    assert ship.locale == "en" and ship.tags == ["returns", "shipping"]
    assert ship.answer.startswith("If the item arrived damaged")
    # No id: file name + hash of the first question; stable across loads.
    assert re.fullmatch(r"faq\.csv#[0-9a-f]{12}", invoice.id)
    assert load_path(FIXTURES / "faq.csv")[2].id == invoice.id
    assert invoice.locale == "zh" and invoice.tags == ["发票", "invoice"]


def test_auto_id_follows_the_first_question_not_the_row(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("question,answer\nWhere is my parcel?,Track it.\nCan I pay later?,No.\n", encoding="utf-8")
    ids = {e.questions[0]: e.id for e in load_path(path)}
    # Rows swapped, columns swapped, answer edited, question re-cased and re-spaced: same ids.
    path.write_text("answer,question\nNo.,Can I pay later?\nTrack it in My Orders.,Where  is my PARCEL?\n", encoding="utf-8")
    assert {e.questions[0]: e.id for e in load_path(path)} == {"Can I pay later?": ids["Can I pay later?"],
                                                              "Where is my PARCEL?": ids["Where is my parcel?"]}


def test_jsonl_faq_and_article_lines():
    entries = load_path(FIXTURES / "faq.jsonl")
    assert [(e.id, e.kind, e.locale) for e in entries] == [
        ("track-order", "faq", "en"),
        ("change-address", "faq", "zh"),
        ("refund-time", "faq", "en"),
        ("care-guide", "article", "en"),
    ]
    assert entries[0].questions == ["Where is my parcel?", "How can I track my order?"]
    assert entries[1].title == "修改地址" and entries[2].tags == ["returns", "payment"]
    assert entries[3].body.startswith("Wash the linen shirts") and entries[3].title == "Care guide"


def test_yaml_with_top_level_defaults():
    entries = load_path(FIXTURES / "faq.yaml", default_tags=["shop"])
    exchange, gift, card = entries
    assert exchange.id == "exchange-size" and exchange.locale == "zh"
    assert exchange.questions == ["尺码不合适可以换吗？", "怎么换尺码"]
    assert exchange.tags == ["shop", "售后"]
    assert gift.id.startswith("faq.yaml#") and gift.tags == ["shop", "售后", "赠品"]
    assert card.locale == "en"  # an entry's own locale beats the file's


def test_yaml_plain_list(tmp_path):
    path = tmp_path / "list.yml"
    path.write_text("- question: Do you ship to Austria?\n  answer: Yes, in 3 to 5 days.\n", encoding="utf-8")
    (entry,) = load_path(path)
    assert entry.locale == "en" and entry.title == "Do you ship to Austria?"


def test_default_locale_fills_only_missing_locales(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": "a", "question": "OK?", "answer": "好"}\n{"id": "b", "question": "好?", "answer": "x", "locale": "zh"}\n',
                    encoding="utf-8")
    assert [e.locale for e in load_path(path, default_locale="en-GB")] == ["en", "zh"]
    assert [e.locale for e in load_path(path)] == ["en", "zh"]


# --- documents -------------------------------------------------------------------------------------------------


def test_markdown_guide():
    (entry,) = load_path(FIXTURES / "guide_zh.md", default_tags=("returns",))
    assert entry.id == "doc:guide_zh.md" and entry.kind == "article"
    assert entry.title == "退货指南" and entry.locale == "zh"
    assert entry.tags == ["returns", "指南"]  # the front matter's tags after the defaults
    assert not entry.body.startswith("---")
    assert [c for _, c in entry.chunks()][1].startswith("退货指南 > 退货条件: ")


def test_plain_text():
    (entry,) = load_path(FIXTURES / "shipping_en.txt")
    assert entry.id == "doc:shipping_en.txt" and entry.title == "shipping_en" and entry.locale == "en"
    assert "help@shop.example.com" in entry.body


def test_html_drops_scripts_styles_nav_and_footer():
    (entry,) = load_path(FIXTURES / "invoices.html")
    assert entry.title == "Invoices" and entry.locale == "en" and entry.id == "doc:invoices.html"
    for noise in ("do not index", "never shown", "font-family", "Help menu", "All rights reserved", "Example Shop"):
        assert noise not in entry.body
    assert entry.body.startswith("# Invoices\n\nEvery order comes with an electronic invoice.")
    assert "## Company invoices" in entry.body
    assert "- Invoices are issued in EUR.\n- A corrected invoice" in entry.body
    chunks = [c for _, c in entry.chunks()]
    assert chunks[1].startswith("Invoices > Company invoices: Business customers")
    assert chunks[-1] == "Invoices > Lost invoices: You can download every invoice again from My Orders."


def test_html_title_falls_back_to_title_element(tmp_path):
    path = tmp_path / "p.htm"
    path.write_text("<html><head><title>运费 说明</title></head><body><p>满99元包邮。</p></body></html>", encoding="utf-8")
    (entry,) = load_path(path)
    assert entry.title == "运费 说明" and entry.body == "满99元包邮。" and entry.locale == "zh"


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def make_pdf(pages: list[tuple[list[str], bool]], title: str | None = None) -> bytes:
    """A minimal PDF: one text object per page, lines of Latin text in Helvetica or
    (cjk=True) of Chinese in an Identity-H font with a ToUnicode map (not embedded:
    enough for text extraction)."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    helvetica = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    chars = sorted({ch for lines, cjk in pages if cjk for line in lines for ch in line})
    cid = {ch: i + 1 for i, ch in enumerate(chars)}
    cmap = (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def\n"
        "1 begincodespacerange <0000> <FFFF> endcodespacerange\n"
        f"{len(chars)} beginbfchar\n" + "".join(f"<{cid[ch]:04X}> <{ord(ch):04X}>\n" for ch in chars) + "endbfchar\n"
        "endcmap CMapName currentdict /CMap defineresource pop end end\n"
    ).encode()
    to_unicode = add(b"<< /Length %d >>\nstream\n" % len(cmap) + cmap + b"\nendstream")
    descriptor = add(b"<< /Type /FontDescriptor /FontName /SimSun /Flags 4 /FontBBox [0 -200 1000 900] /ItalicAngle 0 "
                     b"/Ascent 880 /Descent -120 /CapHeight 700 /StemV 80 >>")
    cid_font = add(b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /SimSun /CIDSystemInfo << /Registry (Adobe) "
                   b"/Ordering (Identity) /Supplement 0 >> /FontDescriptor %d 0 R /DW 1000 >>" % descriptor)
    chinese = add(b"<< /Type /Font /Subtype /Type0 /BaseFont /SimSun /Encoding /Identity-H /DescendantFonts [%d 0 R] "
                  b"/ToUnicode %d 0 R >>" % (cid_font, to_unicode))
    pages_id = add(b"")  # filled in below
    kids = []
    for lines, cjk in pages:
        ops = ["BT", "/F2 12 Tf" if cjk else "/F1 12 Tf", "72 720 Td", "16 TL"]
        for line in lines:
            shown = "<" + "".join(f"{cid[ch]:04X}" for ch in line) + ">" if cjk else _pdf_string(line)
            ops.append(f"{shown} Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode()
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                        b"/Resources << /Font << /F1 %d 0 R /F2 %d 0 R >> >> >>" % (pages_id, content, helvetica, chinese)))
    objects[pages_id - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (" ".join(f"{k} 0 R" for k in kids).encode(), len(kids))
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    info = add(b"<< /Title %s >>" % _pdf_string(title).encode()) if title else 0
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    trailer = b"<< /Size %d /Root %d 0 R" % (len(objects) + 1, catalog) + (b" /Info %d 0 R" % info if info else b"")
    out.write(b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def test_pdf_text_of_every_page(tmp_path):
    path = tmp_path / "returns-policy.pdf"
    path.write_bytes(make_pdf([(["Returns policy", "You can return unused items within 30 days.",
                                 "Refunds take 3.5 days on average."], False),
                               (["Damaged items (photo required) are replaced free of charge."], False)],
                              title="Returns policy 2024"))
    (entry,) = load_path(path)
    assert entry.id == "doc:returns-policy.pdf" and entry.title == "Returns policy 2024" and entry.locale == "en"
    assert "within 30 days." in entry.body and "Damaged items (photo required)" in entry.body
    assert entry.body.index("3.5 days") < entry.body.index("Damaged")
    assert "Refunds take 3.5 days on average." in split_sentences(entry.body)


def test_pdf_chinese_without_metadata_title(tmp_path):
    path = tmp_path / "退货.pdf"
    path.write_bytes(make_pdf([(["退货需在七天内申请。", "质量问题的运费由我们承担。"], True)]))
    (entry,) = load_path(path)
    assert entry.title == "退货" and entry.locale == "zh"
    assert split_sentences(entry.body) == ["退货需在七天内申请。", "质量问题的运费由我们承担。"]


# --- paths -----------------------------------------------------------------------------------------------------


def test_iter_paths_sorts_skips_and_reports(tmp_path):
    kb = tmp_path / "kb"
    shutil.copytree(FIXTURES, kb)
    (kb / "sub").mkdir()
    (kb / "sub" / "b.txt").write_text("Second file.", encoding="utf-8")
    (kb / ".hidden.md").write_text("# secret", encoding="utf-8")
    (kb / ".git").mkdir()
    (kb / ".git" / "x.md").write_text("# git", encoding="utf-8")
    (kb / "notes.docx").write_bytes(b"PK")
    files, skipped = iter_paths([kb, kb / "faq.csv"])
    assert [f.relative_to(kb).as_posix() for f in files] == [
        "faq.csv", "faq.jsonl", "faq.yaml", "guide_zh.md", "invoices.html", "shipping_en.txt", "sub/b.txt",
    ]
    assert sorted(p.name for p in skipped) == [".git", ".hidden.md", "notes.docx"]
    pairs, _ = expand_paths([kb, FIXTURES / "faq.yaml"])
    assert (kb / "sub" / "b.txt", kb) in pairs and pairs[-1] == (FIXTURES / "faq.yaml", FIXTURES)
    with pytest.raises(DocumentError, match=r"notes\.docx: unsupported file type '\.docx'"):
        iter_paths([kb / "notes.docx"])
    with pytest.raises(DocumentError, match="no such file or directory"):
        iter_paths([kb / "missing.md"])


def test_load_paths_ids_relative_to_the_directory_given(tmp_path):
    kb = tmp_path / "kb"
    (kb / "guides").mkdir(parents=True)
    shutil.copy(FIXTURES / "guide_zh.md", kb / "guides" / "returns.md")
    shutil.copy(FIXTURES / "faq.csv", kb / "faq.csv")
    skipped: list[Path] = []
    entries = load_paths([kb], skipped=skipped)
    assert [e.id for e in entries][-1] == "doc:guides/returns.md" and skipped == []
    (file, base), = expand_paths([kb / "guides"])[0]
    assert load_path(file, base=kb)[0].id == "doc:guides/returns.md" and load_path(file, base=base)[0].id == "doc:returns.md"
    assert any(e.id.startswith("faq.csv#") for e in entries)
    # A file named directly: relative to its own directory.
    assert load_paths([kb / "guides" / "returns.md"])[0].id == "doc:returns.md"
    # The same id from two files is an error naming both.
    (kb / "guides" / "faq.csv").write_bytes((FIXTURES / "faq.csv").read_bytes())
    with pytest.raises(DocumentError, match=r"duplicate id 'ret-window' \(also in .*faq\.csv\)"):
        load_paths([kb])


# --- errors ----------------------------------------------------------------------------------------------------


def _error(path: Path, content: str | bytes) -> DocumentError:
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    with pytest.raises(DocumentError) as info:
        load_path(path)
    assert isinstance(info.value, InvalidArgument)
    assert str(info.value).startswith(str(path))
    return info.value


def test_error_bad_json_line(tmp_path):
    err = _error(tmp_path / "faq.jsonl", '{"id": "a", "question": "Q?", "answer": "A."}\n\n{"id": "b", "question": "Q2?"\n')
    assert str(err).endswith("faq.jsonl, line 3: malformed JSON: Expecting ',' delimiter (column 30)")
    assert err.location == "line 3"
    err = _error(tmp_path / "faq.jsonl", '["not", "an", "object"]\n')
    assert "line 1: expected a JSON object" in str(err)


def test_error_csv_missing_answer_column(tmp_path):
    err = _error(tmp_path / "faq.csv", "id,question,reply\na,Q?,A.\n")
    assert str(err).endswith("faq.csv, row 1: missing required column 'answer'")


def test_error_csv_bad_quoting_and_extra_cells(tmp_path):
    err = _error(tmp_path / "faq.csv", 'question,answer\nQ1?,A1.\n"Q2?"x,A2.\n')
    assert "faq.csv, row 3 (line 3): malformed CSV" in str(err)
    err = _error(tmp_path / "faq.csv", "question,answer\nQ1?,A1.,stray\n")
    assert str(err).endswith("faq.csv, row 2: 3 cells but the header has 2 columns")


def test_jsonl_strings_may_hold_line_separators(tmp_path):
    path = tmp_path / "faq.jsonl"
    path.write_text('{"id": "a", "question": "Q?", "answer": "one\u2028two"}\n', encoding="utf-8")
    assert load_path(path)[0].answer == "one\u2028two"


def test_error_csv_empty_answer_names_the_row(tmp_path):
    rows = "".join(f"q{i},Question {i}?,Answer {i}.\n" for i in range(2, 7))
    err = _error(tmp_path / "faq.csv", f"id,question,answer\n{rows}q7,Question 7?, \n")
    assert str(err).endswith("faq.csv, row 7: answer is empty")


def test_error_duplicate_ids(tmp_path):
    err = _error(tmp_path / "faq.csv", "id,question,answer\nsame,Q1?,A1.\nother,Q2?,A2.\nsame,Q3?,A3.\n")
    assert str(err).endswith("faq.csv, row 4: duplicate id 'same' (also in row 2)")
    # Two rows without id and the same first question collide too.
    err = _error(tmp_path / "faq.yaml", "- {question: 能退吗？, answer: 能。}\n- {question: 能退吗？, answer: 不能。}\n")
    assert "entry 2 (line 2): duplicate id 'faq.yaml#" in str(err)


def test_error_not_utf8(tmp_path):
    err = _error(tmp_path / "faq.csv", "id,question,answer\n".encode() + "a,退货?,可以。\n".encode("gbk"))
    assert "faq.csv, line 2: not valid UTF-8" in str(err)
    err = _error(tmp_path / "guide.md", b"# ok\n\n\xff\xfe broken")
    assert "guide.md, line 3: not valid UTF-8 (byte 0xff" in str(err)


def test_error_unsupported_suffix_and_unreadable_pdf(tmp_path):
    assert "unsupported file type '.docx'" in str(_error(tmp_path / "manual.docx", b"PK\x03\x04"))
    assert "not a readable PDF" in str(_error(tmp_path / "manual.pdf", b"this is not a PDF at all"))
    blank = make_pdf([([], False)])
    assert "no extractable text" in str(_error(tmp_path / "scan.pdf", blank))


def test_error_yaml_syntax_and_shape(tmp_path):
    err = _error(tmp_path / "faq.yaml", "faq:\n  - question: a\n    answer: [unclosed\n")
    assert re.search(r"faq\.yaml, line \d+: malformed YAML", str(err))
    assert "expected a list of entries" in str(_error(tmp_path / "faq.yaml", "question: a\nanswer: b\n"))
    err = _error(tmp_path / "faq.yaml", "- question: Is it free?\n  answer: yes\n")
    assert "entry 1 (line 1): field 'answer' must be text (quote it in YAML)" in str(err)


def test_entry_validation_errors_are_wrapped_with_the_file(tmp_path):
    err = _error(tmp_path / "faq.jsonl", '{"id": "a", "question": "Q?", "answer": "A."}\n{"id": "b", "question": "Q?", "answer": "A.", '
                                         '"locale": "fr"}\n')
    assert str(err).endswith("faq.jsonl, line 2: document 'b': locale must be one of ('zh', 'en'), got 'fr'")
    assert "no text" in str(_error(tmp_path / "empty.md", "---\ntitle: x\n---\n\n"))


def test_a_file_gives_all_entries_or_none(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("id,question,answer\na,Q1?,A1.\nb,Q2?,A2.\n", encoding="utf-8")
    assert len(load_path(path)) == 2
    path.write_text("id,question,answer\na,Q1?,A1.\nb,Q2?,A2.\nc,Q3?,\n", encoding="utf-8")
    with pytest.raises(DocumentError, match="row 4: answer is empty"):
        load_path(path)
