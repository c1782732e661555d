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

from services.config import KefuConfig
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


class _SharedServer:
    """One server per test session even when the fixture is imported in several places
    (conftest.py and a test module each register their own copy of the fixture)."""

    users = 0
    value: tuple[KefuConfig, TritonServer] | None = None
    started_at = 0.0


def _acquire(tmp_path_factory) -> tuple[KefuConfig, TritonServer]:
    if _SharedServer.value is None:
        cfg = KefuConfig(home=str(tmp_path_factory.mktemp("kefu-triton")))
        cfg.ports.triton_grpc, cfg.ports.triton_http, cfg.ports.triton_metrics = free_ports(3)
        ensure_models(cfg, progress=lambda line: print(f"[models] {line}", file=sys.stderr))
        server = TritonServer(cfg, log_path=cfg.home_path / "triton.log")
        _SharedServer.started_at = time.monotonic()
        server.start()
        try:
            waited = server.wait_ready(timeout=240)
        except BaseException:
            server.stop()
            raise
        print(f"[triton] pid {server.pid} ready in {waited:.1f} s (log {server.log_path})", file=sys.stderr)
        _SharedServer.value = (cfg, server)
    _SharedServer.users += 1
    return _SharedServer.value


def _release() -> None:
    _SharedServer.users -= 1
    if _SharedServer.users == 0 and _SharedServer.value is not None:
        _, server = _SharedServer.value
        _SharedServer.value = None
        t1 = time.monotonic()
        code = server.stop()
        print(f"[triton] stopped with code {code} in {time.monotonic() - t1:.1f} s, "
              f"{t1 - _SharedServer.started_at:.0f} s after start", file=sys.stderr)


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory) -> Iterator[tuple[KefuConfig, TritonServer]]:
    """``(cfg, server)``: a ready tritonserver on free loopback ports; ``cfg`` points at it."""
    value = _acquire(tmp_path_factory)
    try:
        yield value
    finally:
        _release()
