"""A real tritonserver serving kefu's model repository, shared by the whole test session.

``models.cache_dir`` keeps its default so the converted LLM is made once per machine;
``home`` (logs, the backend folder) and the ports are private to the session.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Iterator

import pytest

from services.config import KefuConfig, load_config
from services.serving.model_files import ensure_models
from services.serving.triton import TritonServer


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free TCP ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory, span_sink) -> Iterator[tuple[KefuConfig, TritonServer]]:
    """``(cfg, server)``: a ready tritonserver on free loopback ports; ``cfg`` points at it.
    Triton traces its requests into the suite's span receiver (through the relay ``kefu up
    --traces`` uses: Triton exports OTLP/JSON).

    The configuration honours KEFU_* variables (e.g. KEFU_MODELS_CACHE_DIR)."""
    from services.trace_relay import TraceRelay

    cfg = load_config()
    cfg.home = str(tmp_path_factory.mktemp("kefu-triton"))
    cfg.ports.triton_grpc, cfg.ports.triton_http, cfg.ports.triton_metrics = free_ports(3)
    relay = TraceRelay(span_sink.endpoint).start()
    cfg.telemetry.triton_traces_url = relay.url
    ensure_models(cfg, progress=lambda line: print(f"[models] {line}", file=sys.stderr))
    server = TritonServer(cfg, log_path=cfg.home_path / "triton.log")
    started = time.monotonic()
    server.start()
    try:
        waited = server.wait_ready(timeout=240)
        print(f"[triton] pid {server.pid} ready in {waited:.1f} s (log {server.log_path})", file=sys.stderr)
        yield cfg, server
    finally:
        t1 = time.monotonic()
        code = server.stop()
        print(f"[triton] stopped with code {code} in {time.monotonic() - t1:.1f} s, "
              f"{t1 - started:.0f} s after start", file=sys.stderr)
        relay.stop()
