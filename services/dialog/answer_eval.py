"""``kefu eval answers``: would a customer accept kefu's knowledge answers?

Each question of the file (JSONL: ``id``, ``language``, ``question``, ``kind`` faq |
multi | doc | offtopic, ``faq_ids`` or ``doc_ids``, ``key_facts``, ``split`` tune |
report) is asked in a fresh session of the running kefu. A reply to a question the
knowledge answers is **acceptable** when it is an answer (not an abstention) that carries
every key fact and none of:

* a framing phrase (「根据资料，」, "The reference states that ...");
* a role label (「客服：」, "Customer:");
* repetition (the Generation loop guard's own detector, run over the whole reply);
* restating the question instead of answering it;
* a number (figure, date, amount) found neither in the sources nor in the question;
* a decline ("I'm not sure", 「不确定」) inside an answer.

Off-topic questions must get no answer from the knowledge: an honest abstention
(ACTION_TYPE_ABSTAIN: "I'm not sure, shall I get you a person?") or a handoff to a person
(a legal threat is handed over at once); a smalltalk reply, a question back, a task or an
answer are not. Reported by language and by split (tune on one half, report both), with
the reasons replies failed:

    kefu eval answers --questions bench/answers/questions_zh.jsonl --questions bench/answers/questions_en.jsonl --json
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Sequence

from services.config import REPO_ROOT
from services.errors import InvalidArgument

FRAMING = re.compile(
    r"根据(参考)?资料|参考资料|根据(您?提供的|以上|上述|相关)?(信息|内容|资料|说明)|资料(中|里)?(提到|显示|说明)|"
    r"\b(according to|based on) (the|this|our) (reference|passage|information|document|faq|context|provided)|"
    r"\bthe (reference|passage|document|context)( provided)? (states|says|mentions|indicates|notes)\b",
    re.I,
)
ROLE_LABEL = re.compile(r"(^|\n)\s*(客服|顾客|用户|助手|回答|答|问|Customer|Agent|Assistant|User|Answer|Q|A)\s*[:：]", re.I)
_FIGURE = re.compile(r"\d+(?:[.,]\d+)*")
ANSWER_KINDS = ("faq", "multi", "doc")


def _figures(text: str) -> set[str]:
    return {f.replace(",", "") for f in _FIGURE.findall(text)}


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def load_questions(paths: list[Path]) -> list[dict[str, Any]]:
    from services.knowledge.evaluation import read_jsonl

    out: list[dict[str, Any]] = []
    for path in paths:
        for n, q in read_jsonl(path, "the questions"):
            for key in ("id", "language", "question", "kind"):
                if not q.get(key):
                    raise InvalidArgument(f"{path}, line {n}: '{key}' is missing")
            out.append(q)
    return out


def sources(question: dict[str, Any], faq: dict[str, str], docs: dict[str, str]) -> str:
    """The texts the question's answer comes from: its FAQ answers or documents."""
    return "\n".join([faq.get(i, "") for i in question.get("faq_ids", [])] + [docs.get(i, "") for i in question.get("doc_ids", [])])


def judge(
    question: dict[str, Any], reply: str, actions: list[str], citations: list[str], source_text: str, issued: Sequence[str] = ()
) -> list[str]:
    """Why a reply is not acceptable ([] when it is). ``issued``: what the turn's actions
    created (a ticket's number), which the reply may quote."""
    from services.dialog.grounding import declines
    from services.generation.repetition import RepetitionGuard

    kind = question["kind"]
    abstained = "ACTION_TYPE_ABSTAIN" in actions
    if kind == "offtopic":
        return [] if abstained or "ACTION_TYPE_HANDOFF" in actions else ["answered_offtopic"]
    if abstained or "ACTION_TYPE_ANSWER" not in actions:
        return ["abstained" if abstained else "no_answer:" + ",".join(a.removeprefix("ACTION_TYPE_").lower() for a in actions)]
    problems = []
    missing = [f for f in question.get("key_facts", []) if _squash(f) not in _squash(reply)]
    if missing:
        problems.append("facts_missing")
    if FRAMING.search(reply):
        problems.append("framing")
    if ROLE_LABEL.search(reply):
        problems.append("role_label")
    guard = RepetitionGuard()
    guard.feed(reply)
    guard.finish()
    if guard.fired:
        problems.append("repetition")
    first = re.split(r"(?<=[。！？.!?])\s*", reply.strip())[0]
    if difflib.SequenceMatcher(None, _squash(first), _squash(question["question"])).ratio() > 0.6:
        problems.append("restated")
    invented = _figures(reply) - _figures(source_text) - _figures(question["question"]) - _figures("\n".join(citations)) - _figures("\n".join(issued))
    if invented:
        problems.append("number_not_in_sources")
    if declines(reply):
        problems.append("declined")
    return problems


def _faq_answers() -> dict[str, str]:
    import yaml

    doc = yaml.safe_load((REPO_ROOT / "services" / "demo" / "pack" / "faq.yaml").read_text(encoding="utf-8"))
    return {e["id"]: e["answer"] for e in doc["entries"]}


def _doc_texts(folder: Path | None) -> dict[str, str]:
    if folder is None or not folder.is_dir():
        return {}
    return {f"doc:{p.relative_to(folder)}": p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*.md"))}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        for key in ("all", r["language"], f"{r['language']}/{r['split']}", f"split/{r['split']}"):
            groups[key].append(r)
    for key, rs in sorted(groups.items()):
        answerable = [r for r in rs if r["kind"] in ANSWER_KINDS]
        off = [r for r in rs if r["kind"] == "offtopic"]
        reasons = Counter(p.split(":")[0] for r in answerable for p in r["problems"])
        out[key] = {
            "answerable": len(answerable),
            "acceptable": round(sum(not r["problems"] for r in answerable) / max(1, len(answerable)), 4),
            "false_abstain": round(sum("abstained" in r["problems"] for r in answerable) / max(1, len(answerable)), 4),
            "offtopic": len(off),
            "offtopic_abstained": round(sum(not r["problems"] for r in off) / max(1, len(off)), 4),
            "reasons": dict(reasons.most_common()),
            "latency_p50_s": round(statistics.median(r["latency_s"] for r in rs), 2) if rs else 0.0,
        }
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--questions", action="append", required=True, help="question file (JSONL); repeatable")
    parser.add_argument("--docs", default=str(REPO_ROOT / "bench" / "answers" / "docs"),
                        help="folder of the documents doc questions cite (ingest it first: kefu ingest DIR)")
    parser.add_argument("--split", choices=("tune", "report", "all"), default="all", help="which half to ask")
    parser.add_argument("--limit", type=int, default=0, help="ask only the first N questions")
    parser.add_argument("--target", help="Dialog address host:port (default from the configuration)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--replies", help="write every question with its reply and verdict to this JSONL file")


def run(args: argparse.Namespace) -> int:
    from services.chat import ChatClient
    from services.config import load_config

    cfg = load_config(getattr(args, "config", None))
    try:
        questions = load_questions([Path(p) for p in args.questions])
    except InvalidArgument as exc:
        print(f"kefu eval answers: {exc}", file=sys.stderr)
        return 1
    if args.split != "all":
        questions = [q for q in questions if q.get("split") == args.split]
    if args.limit:
        questions = questions[: args.limit]
    faq, docs = _faq_answers(), _doc_texts(Path(args.docs) if args.docs else None)
    client = ChatClient(args.target or cfg.target("dialog"), timeout_s=300)
    rows = []
    try:
        for n, q in enumerate(questions, start=1):
            t0 = time.perf_counter()
            result = client.send(q["question"])
            latency = time.perf_counter() - t0
            from kefu.v1 import dialog_pb2

            actions = [dialog_pb2.ActionType.Name(a.type) for a in result.actions]
            # What the reply may quote: the whole cited entry or document (a citation's
            # snippet is only its first 200 characters).
            citations = [faq.get(c.doc_id) or docs.get(c.doc_id) or c.snippet for c in result.citations]
            issued = [a.ticket_id for a in result.actions if a.ticket_id]
            problems = judge(q, result.reply_text, actions, citations, sources(q, faq, docs), issued)
            rows.append({
                "id": q["id"], "language": q["language"], "split": q.get("split", "tune"), "kind": q["kind"],
                "question": q["question"], "reply": result.reply_text, "actions": actions,
                "cited": [c.doc_id for c in result.citations], "problems": problems, "latency_s": latency,
            })
            print(f"[{n}/{len(questions)}] {q['id']}: {'ok' if not problems else ', '.join(problems)}", file=sys.stderr, flush=True)
    finally:
        client.close()
    if args.replies:
        with open(args.replies, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    summary = summarize(rows)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        for key, s in summary.items():
            print(f"{key:<12} acceptable {s['acceptable']:.1%} of {s['answerable']}, false abstain {s['false_abstain']:.1%}, "
                  f"off-topic declined or handed over {s['offtopic_abstained']:.1%} of {s['offtopic']}, p50 {s['latency_p50_s']} s; {s['reasons']}")
    return 0
