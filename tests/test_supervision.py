"""`kefu up` keeps the system running: a crashed child (Triton, a service, the worker) is
restarted with backoff and the supervisor says so; a child that keeps crashing stops the
stack instead of spinning; stopping, or restarting after a crash, leaves no orphan (Triton's
Python backend stubs included). Real processes throughout."""

from __future__ import annotations

import copy
import os
import secrets
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from services.config import KefuConfig
from services.processes import ManagedProcess, ProcessFailed, Supervisor
from services.serving.triton import TritonServer
from services.stack import KefuStack
from tests.triton_fixtures import free_ports


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def group(pgid: int) -> list[int]:
    """Running processes of a process group."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                out.append(int(entry.name))
    return out


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def test_stopping_a_crashed_child_leaves_no_orphan(tmp_path):
    pid_file = tmp_path / "grandchild"
    spawn = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(300)"
    )
    proc = ManagedProcess("parent", [sys.executable, "-c", spawn], log_path=tmp_path / "parent.log").start()
    grandchild = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30, "the grandchild"))
    assert running(grandchild)
    os.kill(proc.pid, signal.SIGKILL)  # a crash: the grandchild (deaf to SIGTERM, like a backend stub) is orphaned
    wait_for(lambda: not proc.alive(), 10, "the crash")
    assert running(grandchild), "the grandchild outlives its parent's crash"
    proc.stop(timeout=2)
    wait_for(lambda: not running(grandchild), 10, "the orphan to be killed")


def test_a_crashed_child_is_restarted_with_backoff(tmp_path):
    proc = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(300)"], log_path=tmp_path / "s.log").start()
    supervisor = Supervisor(backoff_s=0.5, stable_s=300)
    supervisor.watch("sleeper", alive=proc.alive, restart=proc.restart, why=lambda: f"code {proc.returncode}")
    try:
        assert supervisor.check() == []
        first = proc.pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not proc.alive(), 10, "the crash")
        said = supervisor.check()
        assert said == ["kefu: sleeper exited unexpectedly (code -9); restarting in 0.5 s (restart 1)"]
        assert not proc.alive(), "not before the backoff"
        said = wait_for(supervisor.check, 5, "the restart")
        assert said == ["kefu: sleeper restarted"] and proc.alive() and proc.pid != first
        os.kill(proc.pid, signal.SIGKILL)  # again: the delay doubles
        wait_for(lambda: not proc.alive(), 10, "the second crash")
        assert "restarting in 1 s (restart 2)" in supervisor.check()[0]
        assert supervisor.restarts("sleeper") == 2
    finally:
        proc.stop(timeout=2)


def test_a_child_that_keeps_crashing_stops_the_stack(tmp_path):
    proc = ManagedProcess("crasher", [sys.executable, "-c", "raise SystemExit(3)"], log_path=tmp_path / "c.log").start()
    supervisor = Supervisor(backoff_s=0.05, max_restarts=2)
    supervisor.watch("crasher", alive=proc.alive, restart=proc.restart, why=lambda: f"code {proc.returncode}")
    said: list[str] = []
    with pytest.raises(ProcessFailed) as gave_up:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            said += supervisor.check()
            time.sleep(0.05)
    assert "crasher crashed 3 times" in str(gave_up.value) and "code 3" in str(gave_up.value)
    assert sum("restarted" in line for line in said) == 2
    proc.stop(timeout=1)


def test_the_stack_restarts_a_killed_service_and_worker(cfg: KefuConfig, tmp_path):
    own = copy.deepcopy(cfg)
    own.home = str(tmp_path / "home")
    own.temporal.address = cfg.temporal_address  # the suite's Temporal; this stack starts none
    own.temporal.task_queue = f"supervision-{secrets.token_hex(4)}"
    (own.ports.generation,) = free_ports(1)
    stack = KefuStack(own, with_triton=False, progress=lambda line: None)
    stack.supervisor = Supervisor(backoff_s=0.2, stable_s=300)
    try:
        worker = stack.start_worker()
        stack.start_service("generation")
        stack.wait_service("generation", timeout=120)
        worker.wait_until(lambda: "worker ready" in worker.log_tail(5), timeout=60)
        stack.watch_children()
        old = {"worker": worker.pid, "generation": stack.services["generation"].pid}
        for pid in old.values():
            os.kill(pid, signal.SIGKILL)
        said: list[str] = []
        deadline = time.monotonic() + 30
        while sum("restarted" in line for line in said) < 2:
            assert time.monotonic() < deadline, said
            said += stack.supervise()
            time.sleep(0.1)
        assert any(line.startswith("kefu: worker exited unexpectedly (code -9") for line in said), said
        assert any(line.startswith("kefu: generation exited unexpectedly (code -9") for line in said), said
        stack.wait_service("generation", timeout=120)  # serving again, on the same port
        worker.wait_until(lambda: worker.log_tail(5).count("worker ready") >= 1 and worker.pid != old["worker"], timeout=60)
        assert stack.services["generation"].pid != old["generation"]
    finally:
        stack.stop()


def test_a_crashed_triton_is_restarted_without_orphans_and_serves_the_intent_classifier(cfg: KefuConfig, tmp_path):
    """The issue's case: Triton SIGKILLed, its Python-backend stubs orphaned. The restart
    kills them and the new server loads the intent classifier NLU had published."""
    own = copy.deepcopy(cfg)
    own.home = str(tmp_path / "home")
    own.models.triton_models = "embedder"  # enough to show a restart; the llm takes longest to load
    own.ports.triton_grpc, own.ports.triton_http, own.ports.triton_metrics = free_ports(3)
    intent_dir = Path(own.models.repository) / own.models.intent_model
    assert any(p.name.isdigit() for p in intent_dir.iterdir()), "NLU (started by the suite) publishes a version"
    triton = TritonServer(own, log_path=tmp_path / "triton.log")
    supervisor = Supervisor(backoff_s=0.2, stable_s=300)
    try:
        triton.start()
        triton.wait_ready(timeout=240)
        assert own.models.intent_model not in triton.models(), "at the first start NLU loads it itself"
        supervisor.watch("triton", alive=triton.alive, restart=triton.restart, why=triton.exit_reason)
        pgid = triton.pid
        stubs = [pid for pid in group(pgid) if pid != pgid]
        assert stubs, "the embedder runs in a Python backend stub, Triton's child"
        os.kill(pgid, signal.SIGKILL)
        wait_for(lambda: not triton.alive(), 10, "the crash")
        said: list[str] = []
        while not any("restarted" in line for line in said):
            said += supervisor.check()
            time.sleep(0.1)
        assert said[0].startswith("kefu: triton exited unexpectedly (code -9")
        assert not [pid for pid in stubs if running(pid)], "the old stubs were killed with their group"
        triton.wait_ready(timeout=240)
        with urllib.request.urlopen(f"{triton.http_url}/v2/models/{own.models.intent_model}/ready", timeout=5) as resp:
            assert resp.status == 200
    finally:
        triton.stop()


def test_with_triton_down_kefu_still_understands_answers_hands_over_and_does_tasks(cfg: KefuConfig, tmp_path):
    """Triton is gone: NLU understands with its in-process stand-ins, Knowledge searches
    with the in-process embedder (or with NLU's vector, made in process by the same weights),
    FAQ answers come verbatim, handoff and store tasks work; every such turn is marked degraded."""
    import grpc

    import numpy as np

    from kefu.v1 import dialog_pb2, dialog_pb2_grpc, knowledge_pb2, knowledge_pb2_grpc, nlu_pb2, nlu_pb2_grpc
    from services.erp import open_store, reset_store
    from tests.conftest import converse

    own = copy.deepcopy(cfg)
    own.home = str(tmp_path / "home")
    own.models.triton_models = "embedder"  # NLU loads its intent classifier itself
    own.dialog.answer_style = "verbatim"
    (own.ports.triton_grpc, own.ports.triton_http, own.ports.triton_metrics,
     own.ports.nlu, own.ports.knowledge, own.ports.dialog) = free_ports(6)
    reset_store(own)  # the demo store behind the ERP port, in this home
    triton = TritonServer(own, log_path=tmp_path / "triton.log")
    stack = KefuStack(own, with_triton=False, progress=lambda line: None)
    try:
        triton.start()
        triton.wait_ready(timeout=240)
        for name in ("nlu", "knowledge", "dialog"):
            stack.start_service(name)
        for name in ("nlu", "knowledge", "dialog"):
            stack.wait_service(name, timeout=240)
        with grpc.insecure_channel(own.target("nlu")) as ch:
            before = nlu_pb2_grpc.NLUStub(ch).Analyze(nlu_pb2.AnalyzeRequest(text="退货运费谁出？"), timeout=60)
        assert not before.degraded
        triton.stop(timeout=0.5)

        with grpc.insecure_channel(own.target("nlu")) as ch:
            after = nlu_pb2_grpc.NLUStub(ch).Analyze(nlu_pb2.AnalyzeRequest(text="退货运费谁出？"), timeout=120)
        assert after.degraded and after.intents[0].name == before.intents[0].name
        assert abs(after.intents[0].confidence - before.intents[0].confidence) < 0.02  # the same models, in process
        # The in-process embedder runs the same weights: its vector is NLU's to hand on, under the same id,
        # and Knowledge searching with it embeds nothing in process (not degraded); without it, it does.
        assert after.embedder_id == before.embedder_id != ""
        assert float(np.dot(after.query_embedding, before.query_embedding)) > 0.999
        with grpc.insecure_channel(own.target("knowledge")) as ch:
            knowledge = knowledge_pb2_grpc.KnowledgeStub(ch)
            reused = knowledge.Search(knowledge_pb2.SearchRequest(
                query=after.masked_text, locales=["zh"], query_embedding=after.query_embedding, embedder_id=after.embedder_id), timeout=120)
            embedded = knowledge.Search(knowledge_pb2.SearchRequest(query=after.masked_text, locales=["zh"]), timeout=120)
        assert not reused.degraded and embedded.degraded
        assert reused.hits[0].doc_id == embedded.hits[0].doc_id == "returns-shipping-fee-zh"
        with grpc.insecure_channel(own.target("dialog")) as ch:
            dialog = dialog_pb2_grpc.DialogStub(ch)
            _, answered = converse(dialog, "退货运费谁出？")
            assert answered.degraded and answered.citations and answered.citations[0].doc_id == "returns-shipping-fee-zh"
            assert answered.reply_text.startswith(answered.citations[0].snippet[:30])
            _, handed = converse(dialog, "我要投诉，转人工")
            assert handed.handoff == dialog_pb2.HANDOFF_STATE_REQUESTED and handed.degraded
            order = "KF2026090300101"
            store = open_store(own)
            phone = store.get_customer(store.get_order(order).customer_id).phone
            _, asked = converse(dialog, f"我的订单 {order} 到哪了？")
            _, status = converse(dialog, f"我的手机号是 {phone}", asked.session_id)
            assert f"{order} 当前状态为「已签收」" in status.reply_text and status.degraded, status.reply_text
    finally:
        stack.stop()
        triton.stop()
