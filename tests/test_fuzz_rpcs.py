"""Property-based fuzzing of every RPC's requests (tests/fuzz_messages.py): odd Unicode,
huge fields, unknown enum values, deep and empty messages. Every answer is a result or a
clean gRPC status (never INTERNAL or UNKNOWN, never a stack trace in the message), and
nothing is left half-written. Knowledge and Dialog run as processes of their own, so
the random documents and sessions stay out of the rest of the suite. A few hundred cases
here, derandomized; bench/fuzz.py runs tens of thousands."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kefu.v1 import knowledge_pb2, knowledge_pb2_grpc
from tests.fuzz_messages import call, clean, message_strategy, rpcs

RPCS = rpcs()
# Cases per RPC: fewer where each costs a model's reply.
EXAMPLES = {
    "/kefu.v1.Generation/Generate": 3, "/kefu.v1.Generation/GenerateStream": 3, "/kefu.v1.Dialog/Converse": 25,
    "/kefu.v1.NLU/Analyze": 40,
}
TIMEOUTS = {"/kefu.v1.Generation/Generate": 120.0, "/kefu.v1.Generation/GenerateStream": 120.0, "/kefu.v1.Dialog/Converse": 120.0}


@pytest.fixture(scope="module")
def targets(cfg, tmp_path_factory):
    """Channels by service: NLU and Generation of the suite; Knowledge and Dialog (with the
    agent desk and ERP events) of their own."""
    import copy

    from services.stack import KefuStack
    from tests.triton_fixtures import free_ports

    own = copy.deepcopy(cfg)
    own.home = str(tmp_path_factory.mktemp("fuzz-home"))
    own.ports.knowledge, own.ports.dialog = free_ports(2)
    own.dialog.answer_style = "verbatim"
    stack = KefuStack(own, with_triton=False, progress=lambda line: None)
    channels: dict[str, grpc.Channel] = {}
    try:
        for name in ("knowledge", "dialog"):
            stack.start_service(name)
        for name in ("knowledge", "dialog"):
            stack.wait_service(name, timeout=240)
        for service, target in {
            "kefu.v1.NLU": cfg.target("nlu"), "kefu.v1.Generation": cfg.target("generation"),
            "kefu.v1.Knowledge": own.target("knowledge"), "kefu.v1.Dialog": own.target("dialog"),
            "kefu.v1.AgentDesk": own.target("dialog"), "kefu.v1.ErpEvents": own.target("dialog"),
        }.items():
            channels[service] = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
        yield channels, own
    finally:
        for channel in channels.values():
            channel.close()
        stack.stop()


@pytest.mark.parametrize("rpc", RPCS, ids=[r.path.lstrip("/") for r in RPCS])
def test_random_requests_get_clean_answers(rpc, targets):
    channels, _ = targets
    channel = channels[rpc.service]
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES.get(rpc.path, 12), deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(message_strategy(rpc.request), min_size=1, max_size=3))
    def answers_cleanly(requests):
        why = clean(call(channel, rpc, requests, timeout=TIMEOUTS.get(rpc.path, 5.0)))
        if why:
            failures.append(f"{rpc.path}({str(requests[0])[:200]!r}): {why}")
        assert not why, failures[-1]

    answers_cleanly()


def test_nothing_is_half_written_after_the_fuzzing(targets):
    """Runs after the cases above (file order): the databases are whole and the knowledge
    base still answers."""
    channels, own = targets
    for db in ("sessions.db", "knowledge.db"):
        path = Path(own.home) / db
        if path.exists():
            with sqlite3.connect(path) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    found = knowledge_pb2_grpc.KnowledgeStub(channels["kefu.v1.Knowledge"]).Search(
        knowledge_pb2.SearchRequest(query="What is your return policy?", locales=["en"], top_k=3), timeout=60
    )
    assert found.hits and found.hits[0].doc_id == "returns-7day-en"
