"""Knowledge records: one ``KnowledgeEntry`` from a record of a knowledge file (a CSV row,
a JSON line, a YAML item) and the helpers every loader in ``services.knowledge.documents``
shares: the ``DocumentError`` that names the file and row, locale and tag normalisation,
stable ids, UTF-8 decoding, and the all-or-nothing check of a file's entries.

The formats and rules are described in ``services.knowledge.documents``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from services.errors import InvalidArgument
from services.knowledge.analysis import detect_locale
from services.knowledge.entries import KINDS, KnowledgeEntry

_LIST_SPLIT = re.compile(r"[,|;，；、]")
_QUESTION_SPLIT = re.compile(r"[|\n]")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


class DocumentError(InvalidArgument):
    """A knowledge file that cannot be loaded; ``str()`` names the file (and row or line)."""

    def __init__(self, path: Path | str, message: str, location: str | None = None) -> None:
        self.path = Path(path)
        self.location = location
        self.detail = message
        where = f"{path}, {location}" if location else f"{path}"
        super().__init__(f"{where}: {message}")


# --- shared helpers --------------------------------------------------------------------------------------------


def normalise_locale(value: str) -> str:
    """``zh-CN`` / ``zh_Hans`` / ``ZH`` -> ``zh``; ``en-US`` -> ``en``; anything else lower-cased as is."""
    return re.split(r"[-_]", value.strip().lower(), maxsplit=1)[0]


def split_tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in _LIST_SPLIT.split(value) if t.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(t, (str, int)) for t in value):
        return [str(t).strip() for t in value if str(t).strip()]
    raise ValueError("tags must be a string or a list of strings")


def merge_tags(*groups: Iterable[str]) -> list[str]:
    out: list[str] = []
    for group in groups:
        for tag in group:
            tag = tag.strip()
            if tag and tag not in out:
                out.append(tag)
    return out


def stable_hash(text: str) -> str:
    key = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def relative_name(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            pass
    return path.name


def decode_utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DocumentError(
            path, f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the file as UTF-8", f"line {line}"
        ) from None


def read_file_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise DocumentError(path, "is a directory") from None
    except FileNotFoundError:
        raise DocumentError(path, "no such file") from None
    except OSError as exc:
        raise DocumentError(path, f"cannot be read: {exc.strerror or exc}") from None


@dataclass
class LoadContext:
    path: Path
    rel: str
    default_locale: str | None
    default_tags: list[str]


def finish_entries(ctx: LoadContext, entries: Sequence[tuple[KnowledgeEntry, str | None]]) -> list[KnowledgeEntry]:
    """Check ids for repeats and every entry with ``validate()``; all or nothing."""
    seen: dict[str, str | None] = {}
    for entry, where in entries:
        if entry.id in seen:
            raise DocumentError(ctx.path, f"duplicate id {entry.id!r} (also in {seen[entry.id]})", where)
        seen[entry.id] = where
        try:
            entry.validate()
        except InvalidArgument as exc:
            raise DocumentError(ctx.path, str(exc), where) from None
    return [e for e, _ in entries]


# --- FAQ records -----------------------------------------------------------------------------------------------


def text_field(rec: dict[str, Any], key: str) -> str | None:
    value = rec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"field {key!r} must be text" + (" (quote it in YAML)" if isinstance(value, bool) else ""))
    return str(value).strip()


def record_questions(rec: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key in ("questions", "question"):
        value = rec.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            out += _QUESTION_SPLIT.split(value)
        elif isinstance(value, list) and all(isinstance(q, str) for q in value):
            out += value
        else:
            raise ValueError(f"field {key!r} must be a string or a list of strings")
    return [" ".join(q.split()) for q in out if q.strip()]


def record_entry(ctx: LoadContext, rec: dict[str, Any], *, file_locale: str | None = None, file_tags: Sequence[str] = ()) -> KnowledgeEntry:
    """One entry from a record (a CSV row, a JSON line, a YAML item). Raises ValueError with a plain message."""
    questions = record_questions(rec)
    answer = text_field(rec, "answer")
    body = text_field(rec, "body") or text_field(rec, "text")
    kind = text_field(rec, "kind")
    if kind is None:
        kind = "article" if body and not answer else "faq"
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    title = text_field(rec, "title") or ""
    if kind == "faq":
        if not questions:
            raise ValueError("question is empty")
        if not answer:
            raise ValueError("answer is empty")
        if body:
            raise ValueError("both an answer and a body/text: an FAQ entry has an answer, an article a body")
        title = title or questions[0]
        sample = " ".join(questions)
        key = questions[0]
    else:
        if not body:
            raise ValueError("body is empty")
        title = title or first_heading(body) or first_line(body)
        sample = body
        key = title or body
    doc_id = text_field(rec, "id") or f"{ctx.rel}#{stable_hash(key)}"
    locale = text_field(rec, "locale") or file_locale or ctx.default_locale
    if not locale:
        locale = detect_locale(sample) if has_letters(sample) else detect_locale(answer or body or "")
    tags = merge_tags(ctx.default_tags, file_tags, split_tags(rec.get("tags")))
    return KnowledgeEntry(
        id=doc_id,
        kind=kind,
        title=title,
        locale=normalise_locale(locale),
        tags=tags,
        questions=questions,
        answer=answer or "",
        body=body or "",
    )


def has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def first_line(text: str, limit: int = 80) -> str:
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
    return ""


def first_heading(text: str) -> str:
    """The first Markdown heading outside code fences, without markup ("" when there is none)."""
    fence = ""
    for line in text.splitlines():
        m = _FENCE.match(line)
        if m:
            if not fence:
                fence = m.group(1)[0] * len(m.group(1))
            elif line.strip().startswith(fence):
                fence = ""
            continue
        if fence:
            continue
        h = _HEADING.match(line)
        if h and h.group(1).strip("*_` "):
            return " ".join(h.group(1).strip("*_` ").split())
    return ""
