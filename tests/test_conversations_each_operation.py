"""Every operation in Chinese (demo store) and English (τ-bench store), whole
conversations through the real stack, driven by the scripted customer of
`kefu eval conversations` with fixed seeds: the store ends exactly as the operation,
applied by the ERP layer itself, leaves it. Rejections included (past the return window,
a product excluded from returns, an order already shipped: nothing changes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.config import REPO_ROOT, KefuConfig
from services.dialog.conversations import GrpcDialog, run_tasks

DEMO_TASKS = json.loads((REPO_ROOT / "bench" / "demo_tasks_zh.json").read_text(encoding="utf-8"))
TAU = REPO_ROOT.parent / "shared" / "data" / "tau_bench_retail"


def _demo_template(target: Path) -> None:
    from services.demo.store import DemoStore
    from services.erp.demo_store import build_demo_store

    DemoStore.seed(target.parent / "demo-erp.db")
    build_demo_store(target.parent / "demo-erp.db", target)


def _tau_template(target: Path) -> None:
    from services.erp.tau_retail import import_tau_retail

    import_tau_retail(TAU / "data", target)


@pytest.fixture()
def dialog_client(cfg: KefuConfig):
    from services.erp import reset_store

    client = GrpcDialog(cfg.target("dialog"))
    yield client
    client.close()
    reset_store(cfg)


def _picks(tasks, *, rejected: bool = False):
    seen, out = set(), []
    for task in tasks:
        kind = tuple(sorted({a["name"] for a in task["actions"]})) or ("order_status",)
        is_rejection = "应被拒绝" in task.get("instruction", "")
        if kind not in seen and is_rejection == rejected:
            seen.add(kind)
            out.append(task)
    return out


def _run(cfg, client, tasks, template, language):
    outcomes = run_tasks(tasks, build_template=template, store_path=cfg.erp_path, send=client.send, seed=3, language=language)
    failed = [(o.operations, o.diff, o.transcript[-3:]) for o in outcomes if not o.passed]
    assert not failed, failed
    assert not [o.fact_errors for o in outcomes if o.fact_errors]
    return outcomes


def test_every_operation_in_chinese_on_the_demo_store(cfg, dialog_client):
    tasks = _picks(DEMO_TASKS)
    assert {a["name"] for t in tasks for a in t["actions"]} == {
        "cancel_pending_order", "modify_pending_order_address", "modify_pending_order_payment", "modify_pending_order_items",
        "return_delivered_order_items", "exchange_delivered_order_items", "modify_user_address",
    }
    outcomes = _run(cfg, dialog_client, tasks, _demo_template, "zh")
    assert all("已办理" in "".join(r for _, r in o.transcript) for o in outcomes if o.operations)


def test_demo_store_policy_rejections_change_nothing(cfg, dialog_client):
    tasks = _picks(DEMO_TASKS, rejected=True)
    assert len(tasks) >= 2
    outcomes = _run(cfg, dialog_client, tasks, _demo_template, "zh")
    assert all("无法" in "".join(r for _, r in o.transcript) for o in outcomes)


def test_every_operation_in_english_on_the_tau_store(cfg, dialog_client):
    train = json.loads((TAU / "tasks_train.json").read_text(encoding="utf-8"))
    # Address and payment changes come only with item changes in τ-bench's train tasks.
    tasks = _picks([t for t in train if len({a["name"] for a in t["actions"]}) == 1])
    tasks += [next(t for t in train if {a["name"] for a in t["actions"]} == {"modify_pending_order_items", extra})
              for extra in ("modify_pending_order_address", "modify_pending_order_payment")]
    assert {a["name"] for t in tasks for a in t["actions"]} >= {
        "cancel_pending_order", "modify_pending_order_address", "modify_pending_order_payment", "modify_pending_order_items",
        "return_delivered_order_items", "exchange_delivered_order_items",
    }
    _run(cfg, dialog_client, tasks, _tau_template, "en")
