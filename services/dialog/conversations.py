"""``kefu eval conversations``: task-completing dialog measured end to end.

For each task (τ-bench's format: ``user_id``, ``instruction``, ``actions``) a scripted
customer talks to the running kefu in a fresh session, the store reset to the imported
data before each task. The customer knows its goal only from the task's write actions
and the store's data: it states what it wants, answers what ``DialogState.requested_slot``
asks, describes its order by the products in it (and withholds the order number in at
least half of the tasks, seeded), says yes only to a pending operation that matches its
goal exactly, and no otherwise. A task passes when kefu's exported store equals the
expected one: the initial data with the task's write actions applied by the ERP layer
itself. Every reply is also checked for account facts (order ids, statuses, amounts,
tracking numbers) that differ from the store.

    kefu eval conversations --tasks tasks_dev.json --data DIR [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from services.dialog.scripted_customer import Goal, ScriptedCustomer
from services.erp.port import OPERATIONS, StorePort

WRITE_OPERATIONS = set(OPERATIONS)
MAX_TURNS = 30


# ----------------------------------------------------------------------------- fact checking

_ORDER = re.compile(r"#W\d{7}|KF\d{13}")
_MONEY = re.compile(r"[$¥]([\d,]+\.\d{2})")
_TRACKING = re.compile(r"(?<![A-Za-z\d])[A-Z]{0,4}\d{12}(?!\d)")
_ZH_STATUS = re.compile(r"当前状态为「([^」]+)」")
STATUSES = ("pending (item modified)", "return requested", "exchange requested", "pending", "processed", "delivered", "cancelled")


def fact_errors(reply: str, store: StorePort, customer_id: str, pending_args: dict[str, Any]) -> list[str]:
    from services.dialog.flows.replies import status_name

    """Account facts in ``reply`` that differ from the store: order ids that are not the
    customer's, a status next to an order id that is not its status, amounts and tracking
    numbers found nowhere in the customer's orders."""
    errors = []
    customer = store.get_customer(customer_id) if customer_id else None
    orders = store.list_orders(customer_id) if customer else []
    own = {o.order_id: o for o in orders}
    for sentence in re.split(r"(?<=[.!?\n])\s+|(?<=[。！？])", reply):
        for oid in _ORDER.findall(sentence):
            if oid not in own:
                errors.append(f"order {oid} is not the customer's")
                continue
            said = next((s for s in STATUSES if re.search(rf"\b(is|now|status)\W+{re.escape(s)}(?!\w)", sentence.replace('"', ""))), None)
            if said and said != own[oid].status and not sentence.lstrip().startswith("- "):
                errors.append(f"order {oid} said to be {said!r}, store has {own[oid].status!r}")
            zh = _ZH_STATUS.search(sentence)
            if zh and zh.group(1) != status_name(own[oid].status, "zh"):
                errors.append(f"order {oid} said to be {zh.group(1)!r}, store has {own[oid].status!r}")
    amounts: set[float] = set()
    for o in orders:
        amounts |= {round(it.price, 2) for it in o.items} | {round(p.amount, 2) for p in o.payments}
        amounts.add(round(sum(p.amount for p in o.payments if p.transaction_type == "payment"), 2))
        for it in o.items:
            product = store.get_product(it.product_id)
            amounts |= {round(v.price, 2) for v in product.variants} if product else set()
    if customer:
        amounts |= {round(m.balance, 2) for m in customer.payment_methods if m.balance is not None}
    if pending_args.get("order_id") in own:
        order = own[pending_args["order_id"]]
        chosen = [next((it for it in order.items if it.item_id == i), None) for i in pending_args.get("item_ids", [])]
        amounts.add(round(sum(it.price for it in chosen if it), 2))
        if pending_args.get("new_item_ids"):
            result = store.check("exchange_delivered_order_items" if order.status == "delivered" else "modify_pending_order_items", pending_args)
            amounts.add(round(abs(result.price_difference), 2))
    for raw in _MONEY.findall(reply):
        value = round(float(raw.replace(",", "")), 2)
        if value not in amounts:
            errors.append(f"amount ${raw} not in the store")
    tracking = {t for o in orders for f in o.fulfillments for t in f.tracking_ids}
    for t in _TRACKING.findall(reply):
        if t not in tracking:
            errors.append(f"tracking number {t} not in the customer's orders")
    return errors


# ----------------------------------------------------------------------------- running


@dataclass
class TurnResultView:
    reply: str
    state: dict[str, Any]
    actions: list[dict[str, Any]]


class GrpcDialog:
    """The running kefu's Dialog service."""

    def __init__(self, target: str) -> None:
        from services.chat import ChatClient

        self._client = ChatClient(target, timeout_s=120)

    def send(self, text: str, session_id: str) -> tuple[str, TurnResultView]:
        from services.chat import turn_json

        result = self._client.send(text, session_id)
        data = turn_json(result)
        return result.session_id, TurnResultView(data["reply"], data["state"], data["actions"])

    def close(self) -> None:
        self._client.close()


class DirectDialog:
    """Dialog's flow engine in this process, on the store file itself: no NLU, no
    workflows, no knowledge answers. For developing flows quickly; the benchmark is
    the gRPC run."""

    def __init__(self, store_path: Path, language: str = "en") -> None:
        from services.dialog.flows.spec import flows_for
        from services.dialog.flows.state import FlowState
        from services.erp import open_store_at

        self._store = open_store_at(store_path)
        self._language = language
        self._flows = flows_for(self._store.format)
        self._states: dict[str, FlowState] = {}
        self._new_state = FlowState

    def send(self, text: str, session_id: str) -> tuple[str, TurnResultView]:
        import uuid

        from services.dialog.flows.engine import FlowEngine
        from services.dialog.servicer import dialog_state
        from google.protobuf.json_format import MessageToDict

        session_id = session_id or uuid.uuid4().hex
        st = self._states.setdefault(session_id, self._new_state())
        engine = FlowEngine(self._flows, self._store)
        reply = engine.step(text, st, self._language)
        actions: list[dict[str, Any]] = []
        if reply is None:
            text_out = "(answered from the knowledge)"
        elif reply.run:
            from workflows.store_ops.activities import receipt_of

            result = self._store.apply(reply.run["operation"], reply.run["args"], key=uuid.uuid4().hex)
            actions.append({"type": "ACTION_TYPE_OPERATION", "detail": {"operation": result.operation, "status": result.status}})
            text_out = engine.report(st, receipt_of(result), self._language)
        else:
            text_out = reply.text
        state = MessageToDict(dialog_state(st), preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        state.setdefault("pending", {"operation": "", "args": {}})
        return session_id, TurnResultView(text_out, state, actions)


@dataclass
class TaskOutcome:
    index: int
    user_id: str
    operations: list[str]
    passed: bool
    turns: int
    latencies: list[float]
    fact_errors: list[str]
    withheld: bool
    transcript: list[tuple[str, str]]
    diff: str = ""


def _expected(template: Path, actions: list[dict[str, Any]], workdir: Path) -> dict[str, Any]:
    from services.erp import open_store_at

    path = workdir / "expected.db"
    shutil.copyfile(template, path)
    store = open_store_at(path)
    for n, action in enumerate(actions):
        if action["name"] in WRITE_OPERATIONS:
            store.apply(action["name"], action["kwargs"], key=f"expected-{n}")
    return _export(path, workdir / "expected")


def _export(db: Path, out: Path) -> dict[str, Any]:
    from services.erp.tau_retail import export_tau_retail

    out.mkdir(parents=True, exist_ok=True)
    export_tau_retail(db, out, fmt=None)
    return {name: json.loads((out / f"{name}.json").read_text(encoding="utf-8")) for name in ("users", "orders", "products")}


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    for table in ("orders", "users", "products"):
        for key in sorted(set(a[table]) | set(b[table])):
            if a[table].get(key) != b[table].get(key):
                return f"{table}[{key}]"
    return ""


def run_tasks(
    tasks: list[dict[str, Any]], *, build_template: Callable[[Path], Any], store_path: Path,
    send: Callable[[str, str], tuple[str, TurnResultView]], seed: int = 0, language: str = "en", style: str = "plain",
    progress: Callable[[str], None] = lambda line: None,
) -> list[TaskOutcome]:
    """Run each task in a fresh session on a fresh copy of the store ``build_template``
    writes; the store kefu uses is ``store_path`` (replaced before each task)."""
    from services.erp import open_store_at

    outcomes = []
    with tempfile.TemporaryDirectory(prefix="kefu-conv-") as tmp:
        workdir = Path(tmp)
        template = workdir / "template.db"
        build_template(template)
        reference = open_store_at(template)
        for index, task in enumerate(tasks):
            rng = random.Random(f"{seed}-{index}")
            shutil.copyfile(template, workdir / "fresh.db")
            (workdir / "fresh.db").replace(store_path)  # atomic: kefu's next turn sees it
            goals = [Goal(a["name"], dict(a["kwargs"])) for a in task["actions"] if a["name"] in WRITE_OPERATIONS]
            customer = ScriptedCustomer(
                task["user_id"], goals, reference, rng, withhold_order_id=rng.random() < 0.6,
                identity_by=rng.choice(["email", "phone"]) if language == "zh" else rng.choice(["email", "name_zip"]),
                language=language, correction=bool(task.get("correction")), style=style if style != "mixed" else rng.choice(["plain", "loose"]),
            )
            session, transcript, latencies, errors = "", [], [], []
            live = open_store_at(store_path)
            message: str | None = customer.opening(task.get("ask", ""))
            turns = 0
            while message is not None and turns < MAX_TURNS:
                t0 = time.perf_counter()
                session, view = send(message, session)
                latencies.append(time.perf_counter() - t0)
                turns += 1
                transcript.append((message, view.reply))
                pending = {k: json.loads(v) for k, v in (view.state.get("pending") or {}).get("args", {}).items()}
                errors += fact_errors(view.reply, live, view.state.get("customer_id", ""), pending)
                message = customer.answer(view.state, view.reply)
            got = _export(store_path, workdir / "got")
            want = _expected(template, task["actions"], workdir)
            outcome = TaskOutcome(
                index, task["user_id"], [g.operation for g in goals], got == want, turns, latencies, errors,
                customer.withhold_order_id, transcript, "" if got == want else _first_difference(got, want),
            )
            outcomes.append(outcome)
            progress(f"task {index}: {'pass' if outcome.passed else 'FAIL'} in {turns} turns {outcome.diff}")
    return outcomes


def summarize(outcomes: list[TaskOutcome]) -> dict[str, Any]:
    per_op: dict[str, list[bool]] = defaultdict(list)
    for o in outcomes:
        for op in set(o.operations):
            per_op[op].append(o.passed)
    latencies = sorted(x for o in outcomes for x in o.latencies)

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else 0.0

    return {
        "tasks": len(outcomes),
        "pass_rate": round(sum(o.passed for o in outcomes) / max(1, len(outcomes)), 4),
        "pass_rate_withheld_order_id": round(sum(o.passed for o in outcomes if o.withheld) / max(1, sum(o.withheld for o in outcomes)), 4),
        "withheld_order_id": sum(o.withheld for o in outcomes),
        "per_operation": {op: {"tasks": len(v), "pass_rate": round(sum(v) / len(v), 4)} for op, v in sorted(per_op.items())},
        "turns_per_task": round(statistics.mean(o.turns for o in outcomes), 2) if outcomes else 0.0,
        "turn_latency_ms": {"p50": round(statistics.median(latencies) * 1000, 1) if latencies else 0.0, "p99": pct(0.99)},
        "fact_errors": sum(len(o.fact_errors) for o in outcomes),
        "failed": [{"task": o.index, "user_id": o.user_id, "first_difference": o.diff} for o in outcomes if not o.passed],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", required=True, help="τ-bench task file (tasks_train.json, tasks_dev.json)")
    parser.add_argument("--data", help="the store data the tasks run on (users/orders/products.json); default: data/ beside --tasks")
    parser.add_argument(
        "--store", choices=("tau-retail", "demo"), default="tau-retail",
        help="tau-retail: the tasks run on --data (English); demo: on the demo store, in Chinese (bench/demo_tasks_zh.json)",
    )
    parser.add_argument("--limit", type=int, default=0, help="run the first N tasks (after --sample)")
    parser.add_argument("--sample", type=int, default=0, help="a fixed random sample of N tasks (seeded by --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample and of the scripted customers")
    parser.add_argument("--target", help="Dialog address host:port (default from the configuration)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--transcripts", help="write every conversation to this JSONL file")
    parser.add_argument(
        "--style", choices=("plain", "loose", "mixed"), default="plain",
        help="how the scripted customer words things: plain (the store's names), loose (lower case, short names, "
        "values without option names, other words for yes), mixed (each task one of the two, seeded)",
    )
    parser.add_argument(
        "--direct", action="store_true",
        help="run Dialog's flow engine in this process on a scratch store (no services needed; for developing flows)",
    )


def run(args: argparse.Namespace) -> int:
    from services.config import load_config

    cfg = load_config(getattr(args, "config", None))
    tasks_file = Path(args.tasks)
    try:
        tasks = json.loads(tasks_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"kefu eval conversations: cannot read {tasks_file}: {exc}", file=sys.stderr)
        return 1
    indices = list(range(len(tasks)))
    if args.sample:
        indices = sorted(random.Random(args.seed).sample(indices, min(args.sample, len(indices))))
    if args.limit:
        indices = indices[: args.limit]
    data_dir = Path(args.data) if args.data else tasks_file.parent / "data"
    language = "zh" if args.store == "demo" else "en"

    def build_template(target: Path) -> None:
        if args.store == "demo":
            from services.demo.store import DemoStore
            from services.erp.demo_store import build_demo_store

            DemoStore.seed(target.parent / "demo-erp.db")
            build_demo_store(target.parent / "demo-erp.db", target)
        else:
            from services.erp.tau_retail import import_tau_retail

            import_tau_retail(data_dir, target)

    store_path = cfg.erp_path
    if cfg.state.postgres_dsn and not args.direct:
        # The tasks swap the store file before each one; a kefu on PostgreSQL would not see it.
        print("kefu eval conversations: the store is in PostgreSQL (state.postgres_dsn); run it against a kefu "
              "on SQLite state, or with --direct", file=sys.stderr)
        return 1
    scratch = None
    if args.direct:
        scratch = tempfile.TemporaryDirectory(prefix="kefu-direct-")
        store_path = Path(scratch.name) / "erp.db"
        build_template(store_path)
        dialog: Any = DirectDialog(store_path, language)
    else:
        dialog = GrpcDialog(args.target or cfg.target("dialog"))
    try:
        outcomes = run_tasks(
            [tasks[i] for i in indices], build_template=build_template, store_path=store_path, send=dialog.send,
            seed=args.seed, language=language, style=args.style, progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    finally:
        if not args.direct:
            dialog.close()
        if scratch is not None:
            scratch.cleanup()
    for o, i in zip(outcomes, indices, strict=True):
        o.index = i
    summary = summarize(outcomes)
    if args.transcripts:
        with open(args.transcripts, "w", encoding="utf-8") as fh:
            for o in outcomes:
                fh.write(json.dumps({"task": o.index, "passed": o.passed, "diff": o.diff, "fact_errors": o.fact_errors, "turns": o.transcript}, ensure_ascii=False) + "\n")
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print(f"tasks {summary['tasks']}: pass rate {summary['pass_rate']:.1%} "
              f"(order id withheld in {summary['withheld_order_id']}: {summary['pass_rate_withheld_order_id']:.1%}), "
              f"{summary['turns_per_task']} turns per task, turn p50 {summary['turn_latency_ms']['p50']} ms "
              f"p99 {summary['turn_latency_ms']['p99']} ms, fact errors {summary['fact_errors']}")
        for op, row in summary["per_operation"].items():
            print(f"  {op:<34} {row['tasks']:>4} tasks  {row['pass_rate']:.1%}")
    return 0
