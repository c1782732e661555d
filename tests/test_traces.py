"""Traces an SRE can open: one trace per turn, from Dialog through NLU, Knowledge and
Generation into Triton's inference spans and the Temporal workflow and activities the turn
starts (the kefu worker),
every span's parent in the same trace; the turn's log line carries its trace id; Dialog's
turn metrics are exported. Spans reach the suite's in-process OTLP receiver
(tests/otlp_sink.py), as they would reach Phoenix or a collector."""

from __future__ import annotations

from pathlib import Path

from kefu.v1 import dialog_pb2
from tests.conftest import converse


def _turn_traces(sink) -> set[str]:
    return {s.trace_id for s in sink.snapshot() if s.service == "kefu-dialog" and s.name.endswith("Converse")}


def test_a_handoff_turn_is_one_trace_into_the_worker(dialog, span_sink, cfg):
    before = _turn_traces(span_sink)
    _, result = converse(dialog, "我要投诉，转人工")
    assert result.actions and result.actions[0].ticket_id
    assert span_sink.wait_for(lambda spans: len(_turn_traces(span_sink) - before) >= 1)
    (trace_id,) = _turn_traces(span_sink) - before

    def whole(spans) -> bool:
        names = {(s.service, s.name) for s in spans if s.trace_id == trace_id}
        return ({("kefu-worker", "RunWorkflow:TicketWorkflow"), ("kefu-worker", "RunActivity:open_ticket"),
                 ("kefu-dialog", "StartWorkflow:TicketWorkflow"), ("triton", "InferRequest"), ("triton", "embedder"),
                 ("triton", "compute")} <= names
                and any(svc == "kefu-nlu" for svc, _ in names))

    # Triton exports its spans on its own schedule: wait for all of them, not only the first.
    assert span_sink.wait_for(whole, timeout=20), sorted({(s.service, s.name) for s in span_sink.trace(trace_id)})
    spans = span_sink.trace(trace_id)
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if not s.parent_span_id]
    assert len(roots) == 1 and roots[0].service == "kefu-dialog", "one root: the Converse call"
    assert all(s.parent_span_id in ids for s in spans if s.parent_span_id), "every span's parent is in the trace"
    # Triton's spans hang under NLU's (the embedder and the intent classifier it calls).
    by_id = {s.span_id: s for s in spans}
    infers = [s for s in spans if s.service == "triton" and s.name == "InferRequest"]
    assert infers and all(by_id[s.parent_span_id].service == "kefu-nlu" for s in infers), [(s.name, by_id[s.parent_span_id].service) for s in infers]
    assert {s.name for s in spans if s.service == "triton"} >= {"InferRequest", "embedder", "compute"}

    # The turn's log line in Dialog carries the trace id, so logs and traces meet.
    log = (Path(cfg.home_path) / "logs" / "dialog.log").read_text(encoding="utf-8", errors="replace")
    assert f"trace={trace_id}" in log


def test_dialog_exports_turn_metrics(dialog, span_sink):
    converse(dialog, "What is your return policy?")
    assert span_sink.wait_for(lambda spans: span_sink.latest("kefu-dialog", "kefu.dialog.turns", action="answer") is not None, timeout=20)
    assert span_sink.wait_for(lambda spans: span_sink.latest("kefu-dialog", "kefu.dialog.turn.duration") is not None, timeout=20)
    # The shared stack composes with the model: its time to first token and speed are exported.
    # (A question of its own: a cached reply does not reach the model.)
    _, result = converse(dialog, "How long does shipping usually take to arrive, roughly?")
    assert result.actions[0].type == dialog_pb2.ACTION_TYPE_ANSWER, result.reply_text
    for name in ("kefu.generation.time_to_first_token", "kefu.generation.tokens_per_second"):
        assert span_sink.wait_for(lambda spans, n=name: (span_sink.latest("kefu-generation", n) or 0) >= 1, timeout=20), name


def test_dialog_serves_its_metrics_to_prometheus(lone_service):
    import urllib.request

    import grpc

    from kefu.v1 import dialog_pb2_grpc
    from tests.triton_fixtures import free_ports

    (port,) = free_ports(1)

    def with_prometheus(c) -> None:
        c.telemetry.prometheus_port = port  # Dialog serves on the base port

    _, own = lone_service("dialog", configure=with_prometheus)
    with grpc.insecure_channel(own.target("dialog")) as ch:
        converse(dialog_pb2_grpc.DialogStub(ch), "你好")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode("utf-8")
    assert 'kefu_dialog_turns_total{action="smalltalk"' in text, text[:2000]
    assert "kefu_dialog_turn_duration_seconds_count" in text
