"""Readers for the files the NLU evaluation commands take.

* labelled text (intents, sentiment): CSV with a header ``text,label`` or JSONL lines
  ``{"text": ..., "label": ...}``;
* slot tagging: JSONL lines ``{"tokens": [...], "tags": [...]}`` in BIO (BIOES is
  accepted and read as BIO).

Errors name the file and the line, so a bad row is easy to find.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


class DatasetError(ValueError):
    """A file that cannot be read as the expected format (message names file and line)."""


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str


@dataclass(frozen=True)
class TaggedTokens:
    tokens: list[str]
    tags: list[str]


def _suffix(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


def read_labelled(path: str | Path) -> list[LabelledText]:
    """``text,label`` rows of a CSV (header required) or JSONL file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    rows: list[LabelledText] = []
    if _suffix(path) in ("jsonl", "json", "ndjson"):
        rows = [_labelled(obj, path, n) for n, obj in _json_lines(path)]
    elif _suffix(path) in ("csv", "tsv"):
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if _suffix(path) == "tsv" else ",")
            if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
                raise DatasetError(f"{path}:1: the header must name the columns text and label (found {reader.fieldnames})")
            for n, row in enumerate(reader, start=2):
                rows.append(_labelled(row, path, n))
    else:
        raise DatasetError(f"{path}: unknown format {path.suffix!r}: use .csv, .tsv or .jsonl")
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def _json_lines(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed object) of each non-blank line of a JSONL file."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{path}:{n}: not JSON ({exc.msg})") from None


def _labelled(obj, path: Path, n: int) -> LabelledText:
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}:{n}: expected an object with text and label")
    text, label = obj.get("text"), obj.get("label")
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{path}:{n}: text is missing or empty")
    if label is None or (isinstance(label, str) and not label.strip()):
        raise DatasetError(f"{path}:{n}: label is missing or empty")
    return LabelledText(text.strip(), str(label).strip())


def read_tagged(path: str | Path) -> list[TaggedTokens]:
    """BIO-tagged token sequences from JSONL; BIOES tags are mapped to BIO (S→B, E→I)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    out: list[TaggedTokens] = []
    for n, obj in _json_lines(path):
        tokens, tags = obj.get("tokens") if isinstance(obj, dict) else None, obj.get("tags") if isinstance(obj, dict) else None
        if not isinstance(tokens, list) or not isinstance(tags, list) or not tokens:
            raise DatasetError(f"{path}:{n}: expected {{\"tokens\": [...], \"tags\": [...]}}")
        if len(tokens) != len(tags):
            raise DatasetError(f"{path}:{n}: {len(tokens)} tokens but {len(tags)} tags")
        bio = []
        for tag in tags:
            tag = str(tag)
            if tag == "O":
                bio.append(tag)
                continue
            head, _, kind = tag.partition("-")
            if head not in ("B", "I", "S", "E") or not kind:
                raise DatasetError(f"{path}:{n}: tag {tag!r} is not O, B-x, I-x (or S-x, E-x)")
            bio.append(("B-" if head in ("B", "S") else "I-") + kind)
        out.append(TaggedTokens([str(t) for t in tokens], bio))
    if not out:
        raise DatasetError(f"{path}: no rows")
    return out
