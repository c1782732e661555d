"""Loading knowledge files into ``KnowledgeEntry``s (``kefu ingest PATH...``).

Formats, chosen by suffix:

* FAQ tables and lists: ``.csv``, ``.jsonl``, ``.yaml`` / ``.yml``.

  - ``.csv``: UTF-8 (a BOM is allowed), a header row, then one entry per row.
    Columns (case-insensitive; Chinese headers 编号/问题/答案/标题/标签/语言 work too):
    ``id``, ``question`` or ``questions`` (several phrasings separated by ``|`` or
    line breaks), ``answer``, and optionally ``title``, ``tags`` (separated by
    ``,`` ``|`` ``;`` or their Chinese forms) and ``locale``. Other columns are
    ignored; rows whose cells are all blank are skipped. Errors count rows like a
    spreadsheet does: the header is row 1.
  - ``.jsonl``: one JSON object per line (blank lines skipped) with ``id``,
    ``questions`` (a list) or ``question`` (a string), ``answer``, ``title``,
    ``tags``, ``locale``. A line with ``text`` or ``body`` instead of ``answer``
    is an article (``kind`` may also be given explicitly).
  - ``.yaml`` / ``.yml``: a list of such objects, or a mapping whose ``faq:`` or
    ``entries:`` key holds the list, with optional top-level ``locale`` and
    ``tags`` applied to every entry (an entry's own ``locale`` wins; tags add up).

* Documents, one article per file: ``.md`` / ``.markdown`` (optional YAML front
  matter between ``---`` lines with ``id``, ``title``, ``locale``, ``tags``), ``.txt``,
  ``.html`` / ``.htm`` (scripts, styles, navigation, footers and hidden elements
  dropped; headings become Markdown headings so chunking sees the sections; lists,
  tables and ``<pre>`` kept as Markdown), ``.pdf`` (the text of every page, pages
  separated by a blank line).

Rules:

* Article id: ``"doc:" + the path relative to the base directory`` (posix), e.g.
  ``doc:guides/returns.md``. The base is the directory given on the command line,
  or the file's own directory when a file is named directly.
* FAQ entry without an ``id``: ``"<relative path>#" + the first 12 hex digits of the
  SHA-1 of the first question`` (NFKC, case-folded, whitespace collapsed), e.g.
  ``faq.csv#3d4e69740719``, so the id survives re-ordering the rows and cosmetic
  edits of the question (an article line without ``id``: of its title).
* Title: FAQ entry without ``title``: its first question. Article: Markdown and
  text: the front matter's ``title``, else the first heading, else the file name
  without suffix; HTML: the first ``<h1>``, else ``<title>``, else the file name;
  PDF: the metadata title, else the file name.
* Locale: the entry's own ``locale`` (``zh-CN``, ``zh_Hans``, ``en-US``... are
  reduced to ``zh`` / ``en``), else the file's (YAML top level, front matter), else
  ``default_locale``, else detected: ``"zh"`` when Han characters are at least 30%
  of the letters of the questions (of the answer or body when those have none),
  otherwise ``"en"``.
* Tags: ``default_tags`` first, then the file's, then the entry's; blanks and
  repeats dropped.

Every problem raises ``DocumentError``, an ``InvalidArgument`` whose message
names the file and, where it applies, the row or line: ``"kb/faq.csv, row 7:
answer is empty"``. A file gives all of its entries or an error, never part of them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from services.knowledge.analysis import detect_locale
from services.knowledge.entries import KnowledgeEntry
from services.knowledge.html_text import HtmlToMarkdown
from services.knowledge.records import (  # noqa: F401 - DocumentError and normalise_locale are part of this module's API
    DocumentError,
    LoadContext,
    decode_utf8,
    finish_entries,
    first_heading,
    merge_tags,
    normalise_locale,
    read_file_bytes,
    record_entry,
    relative_name,
    split_tags,
    text_field,
)

log = logging.getLogger(__name__)

FAQ_SUFFIXES = (".csv", ".jsonl", ".yaml", ".yml")
DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")
SUPPORTED_SUFFIXES = FAQ_SUFFIXES + DOCUMENT_SUFFIXES



_CSV_ALIASES = {
    "id": "id",
    "编号": "id",
    "question": "question",
    "questions": "questions",
    "问题": "questions",
    "answer": "answer",
    "答案": "answer",
    "title": "title",
    "标题": "title",
    "tags": "tags",
    "tag": "tags",
    "标签": "tags",
    "locale": "locale",
    "language": "locale",
    "语言": "locale",
}


def _load_csv(ctx: LoadContext, text: str) -> list[KnowledgeEntry]:
    path = ctx.path
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[list[str]] = []
    try:
        for row in reader:
            rows.append(row)
    except csv.Error as exc:
        raise DocumentError(path, f"malformed CSV: {exc}", f"row {len(rows) + 1} (line {reader.line_num})") from None
    if not rows or not any(c.strip() for c in rows[0]):
        raise DocumentError(path, "no header row")
    columns: list[str | None] = []
    for cell in rows[0]:
        name = cell.strip().lstrip("\ufeff").lower()
        key = _CSV_ALIASES.get(name)
        if key is not None and key in columns:
            raise DocumentError(path, f"column {cell.strip()!r} appears twice", "row 1")
        columns.append(key)
    if "question" not in columns and "questions" not in columns:
        raise DocumentError(path, "missing required column 'question' (or 'questions')", "row 1")
    if "answer" not in columns:
        raise DocumentError(path, "missing required column 'answer'", "row 1")
    entries: list[tuple[KnowledgeEntry, str]] = []
    for number, row in enumerate(rows[1:], start=2):
        where = f"row {number}"
        if not any(c.strip() for c in row):
            continue
        if len(row) > len(columns) and any(c.strip() for c in row[len(columns):]):
            raise DocumentError(path, f"{len(row)} cells but the header has {len(columns)} columns", where)
        rec = {key: cell for key, cell in zip(columns, row, strict=False) if key is not None and cell.strip()}
        try:
            entries.append((record_entry(ctx, rec), where))
        except ValueError as exc:
            raise DocumentError(path, str(exc), where) from None
    if not entries:
        raise DocumentError(path, "no entries (only a header row)")
    return finish_entries(ctx, entries)


def _load_jsonl(ctx: LoadContext, text: str) -> list[KnowledgeEntry]:
    path = ctx.path
    entries: list[tuple[KnowledgeEntry, str]] = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other separators.
    for number, line in enumerate(text.split("\n"), start=1):
        where = f"line {number}"
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DocumentError(path, f"malformed JSON: {exc.msg} (column {exc.colno})", where) from None
        if not isinstance(rec, dict):
            raise DocumentError(path, f"expected a JSON object, got {type(rec).__name__}", where)
        try:
            entries.append((record_entry(ctx, rec), where))
        except ValueError as exc:
            raise DocumentError(path, str(exc), where) from None
    if not entries:
        raise DocumentError(path, "no entries (the file is empty)")
    return finish_entries(ctx, entries)


def _load_yaml(ctx: LoadContext, text: str) -> list[KnowledgeEntry]:
    path = ctx.path
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DocumentError(path, f"malformed YAML: {problem}", f"line {mark.line + 1}" if mark else None) from None
    file_locale: str | None = None
    file_tags: list[str] = []
    items_node: Any = root
    if isinstance(data, dict):
        keys = [k for k in ("faq", "entries") if k in data]
        if len(keys) != 1:
            raise DocumentError(path, "expected a list of entries, or a mapping with an 'faq:' or 'entries:' list")
        items = data[keys[0]]
        for k_node, v_node in root.value:
            if k_node.value == keys[0]:
                items_node = v_node
        try:
            loc = text_field(data, "locale")
            file_locale = normalise_locale(loc) if loc else None
            file_tags = split_tags(data.get("tags"))
        except ValueError as exc:
            raise DocumentError(path, f"top level: {exc}") from None
    else:
        items = data
    if items is None:
        raise DocumentError(path, "no entries")
    if not isinstance(items, list):
        raise DocumentError(path, "expected a list of entries, or a mapping with an 'faq:' or 'entries:' list")
    entries: list[tuple[KnowledgeEntry, str]] = []
    for number, item in enumerate(items, start=1):
        where = f"entry {number}"
        node = items_node.value[number - 1] if isinstance(items_node, yaml.SequenceNode) else None
        if node is not None:
            where += f" (line {node.start_mark.line + 1})"
        if not isinstance(item, dict):
            raise DocumentError(path, "expected a mapping with question(s) and answer", where)
        try:
            entries.append((record_entry(ctx, item, file_locale=file_locale, file_tags=file_tags), where))
        except ValueError as exc:
            raise DocumentError(path, str(exc), where) from None
    if not entries:
        raise DocumentError(path, "no entries")
    return finish_entries(ctx, entries)


# --- documents -------------------------------------------------------------------------------------------------


def _front_matter(path: Path, text: str) -> tuple[dict[str, Any], str]:
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, min(len(lines), 200)):
        if lines[end].strip() in ("---", "..."):
            try:
                meta = yaml.safe_load("\n".join(lines[1:end])) or {}
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f"line {mark.line + 2}" if mark else None
                raise DocumentError(path, f"malformed front matter: {getattr(exc, 'problem', None) or exc}", where) from None
            if not isinstance(meta, dict):
                raise DocumentError(path, "front matter must be a mapping", "line 1")
            return meta, "\n".join(lines[end + 1 :])
    return {}, text


def _article(ctx: LoadContext, body: str, *, title: str = "", meta: dict[str, Any] | None = None) -> list[KnowledgeEntry]:
    meta = meta or {}
    body = body.strip()
    if not body:
        raise DocumentError(ctx.path, "no text")
    try:
        doc_id = text_field(meta, "id") or f"doc:{ctx.rel}"
        title = text_field(meta, "title") or title or first_heading(body) or ctx.path.stem
        locale = text_field(meta, "locale") or ctx.default_locale or detect_locale(body)
        tags = merge_tags(ctx.default_tags, split_tags(meta.get("tags")))
    except ValueError as exc:
        raise DocumentError(ctx.path, f"front matter: {exc}") from None
    entry = KnowledgeEntry(id=doc_id, kind="article", title=" ".join(title.split()), locale=normalise_locale(locale), tags=tags, body=body)
    return finish_entries(ctx, [(entry, None)])


def _load_markdown(ctx: LoadContext, text: str) -> list[KnowledgeEntry]:
    meta, body = _front_matter(ctx.path, text)
    return _article(ctx, body, meta=meta)


def _load_text(ctx: LoadContext, text: str) -> list[KnowledgeEntry]:
    return _article(ctx, text)


def _html_text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        m = re.search(rb"""charset\s*=\s*["']?([A-Za-z0-9_\-]+)""", data[:4096], re.IGNORECASE)
        if m and m.group(1).lower() not in (b"utf-8", b"utf8"):
            try:
                return data.decode(m.group(1).decode("ascii"))
            except (LookupError, UnicodeDecodeError):
                pass
        return decode_utf8(path, data)


def _load_html(ctx: LoadContext, text: str) -> list[KnowledgeEntry]:
    parser = HtmlToMarkdown()
    try:
        parser.feed(text)
        parser.close()
    except Exception as exc:  # noqa: BLE001 - html.parser is lenient; anything left is a broken file
        raise DocumentError(ctx.path, f"cannot parse HTML: {exc}") from None
    # The page's own first <h1> before <title>, which usually carries the site's name too ("Invoices | Shop").
    title = parser.first_h1 or " ".join(parser.title.split())
    return _article(ctx, parser.markdown(), title=title)


def _load_pdf(ctx: LoadContext, data: bytes) -> list[KnowledgeEntry]:
    from pypdf import PdfReader

    path = ctx.path
    pypdf_log = logging.getLogger("pypdf")
    level = pypdf_log.level
    pypdf_log.setLevel(logging.ERROR)  # pypdf warns about every small oddity of a file
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(path, "the PDF is encrypted")
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            try:
                pages.append(page.extract_text() or "")
            except Exception as exc:  # noqa: BLE001 - a broken page breaks the file
                raise DocumentError(path, f"cannot extract text: {exc}", f"page {number}") from None
        meta_title = ""
        try:
            meta = reader.metadata
            meta_title = str(meta.title or "") if meta is not None else ""
        except Exception:  # noqa: BLE001 - a broken info dictionary only loses the title
            meta_title = ""
    except DocumentError:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds for a damaged file
        raise DocumentError(path, f"not a readable PDF: {exc}") from None
    finally:
        pypdf_log.setLevel(level)
    body = "\n\n".join(p.strip() for p in pages if p.strip())
    if not body:
        raise DocumentError(path, "no extractable text (a scanned PDF needs OCR first)")
    return _article(ctx, body, title=" ".join(meta_title.split()) or path.stem)


_TEXT_LOADERS = {
    ".csv": _load_csv,
    ".jsonl": _load_jsonl,
    ".yaml": _load_yaml,
    ".yml": _load_yaml,
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".txt": _load_text,
    ".html": _load_html,
    ".htm": _load_html,
}


# --- public API ------------------------------------------------------------------------------------------------


def load_path(
    path: Path,
    *,
    default_locale: str | None = None,
    default_tags: Sequence[str] = (),
    base: Path | None = None,
) -> list[KnowledgeEntry]:
    """The entries of one file (see the module docstring for formats and rules).

    ``base`` is the directory ids are relative to (default: the file's directory).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentError(path, f"unsupported file type {suffix or '(no suffix)'!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if default_locale is not None:
        default_locale = normalise_locale(default_locale)
    tags = split_tags(default_tags if isinstance(default_tags, str) else list(default_tags))
    ctx = LoadContext(path, relative_name(path, base if base is not None else path.parent), default_locale, merge_tags(tags))
    data = read_file_bytes(path)
    if suffix == ".pdf":
        return _load_pdf(ctx, data)
    text = _html_text(path, data) if suffix in (".html", ".htm") else decode_utf8(path, data)
    return _TEXT_LOADERS[suffix](ctx, text)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def expand_paths(paths: Iterable[Path | str]) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """``iter_paths`` with each file's base directory: ``([(file, base), ...], skipped)``.

    The base is the directory argument a file was found under, or the file's own
    directory for a file named directly; pass it to ``load_path(..., base=base)``
    so ids keep sub-folders (``doc:guides/returns.md``).
    """
    out: list[tuple[Path, Path]] = []
    skipped: list[Path] = []
    seen: set[Path] = set()

    def add(file: Path, base: Path) -> None:
        key = file.resolve()
        if key not in seen:
            seen.add(key)
            out.append((file, base))

    def skip(p: Path, why: str) -> None:
        log.info("ingest: skipping %s (%s)", p, why)
        skipped.append(p)

    for raw in paths:
        root = Path(raw)
        if root.is_dir():
            found: list[Path] = []
            for dirpath, dirnames, filenames in os.walk(root):
                for d in sorted(dirnames):
                    if _hidden(d):
                        skip(Path(dirpath) / d, "hidden")
                dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
                for name in sorted(filenames):
                    file = Path(dirpath) / name
                    if _hidden(name):
                        skip(file, "hidden")
                    elif file.suffix.lower() not in SUPPORTED_SUFFIXES:
                        skip(file, "unsupported file type")
                    else:
                        found.append(file)
            for file in sorted(found, key=lambda f: f.relative_to(root).as_posix()):
                add(file, root)
        elif root.is_file():
            if root.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise DocumentError(root, f"unsupported file type {root.suffix or '(no suffix)'!r}; "
                                          f"use one of {', '.join(SUPPORTED_SUFFIXES)}")
            add(root, root.parent)
        else:
            raise DocumentError(root, "no such file or directory")
    return out, skipped


def iter_paths(paths: Iterable[Path | str]) -> tuple[list[Path], list[Path]]:
    """``(files, skipped)``: the files to load, and what was left out of directories.

    Files are kept as given; directories are expanded recursively, sorted by path
    relative to the directory. Inside directories, hidden files and directories
    (``.name``) and files of an unsupported type are skipped (and logged). A file
    named explicitly with an unsupported type, or a path that does not exist, raises
    ``DocumentError``. A file reached twice is listed once.
    """
    pairs, skipped = expand_paths(paths)
    return [file for file, _ in pairs], skipped


def load_paths(
    paths: Iterable[Path | str],
    *,
    default_locale: str | None = None,
    default_tags: Sequence[str] = (),
    skipped: list[Path] | None = None,
) -> list[KnowledgeEntry]:
    """All entries of ``paths`` (as ``iter_paths`` expands them), ids relative to the directory each came from.

    Raises ``DocumentError`` for the first bad file, or when two files give the same id.
    """
    entries: list[KnowledgeEntry] = []
    origin: dict[str, Path] = {}
    pairs, left_out = expand_paths(paths)
    if skipped is not None:
        skipped += left_out
    for file, base in pairs:
        for entry in load_path(file, default_locale=default_locale, default_tags=default_tags, base=base):
            if entry.id in origin:
                raise DocumentError(file, f"duplicate id {entry.id!r} (also in {origin[entry.id]})")
            origin[entry.id] = file
            entries.append(entry)
    return entries
