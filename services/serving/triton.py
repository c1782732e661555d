"""Run ``tritonserver`` from the ``nvidia-pytriton`` wheel on kefu's model repository.

The wheel bundles Triton with the Python backend only. Three things make a plain
``model_repository`` run with it (see docs RUNTIME_NOTES):

* a backend directory holding ``libtriton_python.so``, ``triton_python_backend_utils.py``
  and the stub built for *this* Python version;
* ``LD_LIBRARY_PATH`` with the wheel's ``nvidia_pytriton.libs`` and this Python's own
  ``LIBDIR`` (else the stub loads the system libpython with a different stdlib);
* this interpreter's ``bin`` first on ``PATH`` so the stub imports the venv's packages.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import sysconfig
import urllib.error
import urllib.request
from pathlib import Path

from services.config import KefuConfig
from services.processes import ManagedProcess, ProcessFailed
from services.serving.embedder_weights import weights_path
from services.serving.model_files import llm_dir


class TritonError(RuntimeError):
    """tritonserver could not be found, started or made ready."""


def _pytriton_root() -> Path:
    from importlib.util import find_spec

    spec = find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonError("nvidia-pytriton is not installed (pip install nvidia-pytriton)")
    root = Path(list(spec.submodule_search_locations)[0])
    if not (root / "tritonserver" / "bin" / "tritonserver").exists():
        raise TritonError(f"no tritonserver binary under {root / 'tritonserver'}")
    return root


def _bundled_libs(pytriton_root: Path) -> Path:
    # auditwheel puts the vendored shared libraries next to the package.
    return pytriton_root.parent / "nvidia_pytriton.libs"


def prepare_backend_dir(cfg: KefuConfig) -> Path:
    """Assemble ``<home>/triton-backends/python`` for this Python; returns ``<home>/triton-backends``."""
    root = _pytriton_root()
    src = root / "tritonserver" / "backends" / "python"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonError(f"nvidia-pytriton has no Python backend stub for Python {version}")
    backends = cfg.home_path / "triton-backends"
    dest = backends / "python"
    dest.mkdir(parents=True, exist_ok=True)
    for f in (src / "libtriton_python.so", src / "triton_python_backend_utils.py", stub):
        target = dest / f.name
        if not target.exists() or target.stat().st_size != f.stat().st_size or target.stat().st_mtime < f.stat().st_mtime:
            tmp = target.with_name(target.name + ".tmp")
            shutil.copy2(f, tmp)
            os.replace(tmp, target)
    return backends


class TritonServer:
    """One ``tritonserver`` process serving ``cfg.models.repository`` on ``cfg.host``."""

    def __init__(self, cfg: KefuConfig, *, log_path: Path | None = None, threads: int | None = None):
        self.cfg = cfg
        self.log_path = Path(log_path) if log_path else cfg.home_path / "logs" / "triton.log"
        self.threads = threads or int(os.environ.get("OMP_NUM_THREADS") or (os.cpu_count() or 1))
        self._process: ManagedProcess | None = None
        # Restarts after a crash (``restart``), by the supervisor of ``kefu up``.
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def http_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.ports.triton_http}"

    @property
    def grpc_target(self) -> str:
        return self.cfg.triton_grpc_target

    def command(self, backends: Path) -> list[str]:
        cfg = self.cfg
        bind = cfg.bind_host or cfg.host
        binary = _pytriton_root() / "tritonserver" / "bin" / "tritonserver"
        return [
            str(binary),
            f"--model-repository={cfg.models.repository}",
            f"--backend-directory={backends}",
            "--model-control-mode=explicit",
            *[f"--load-model={name}" for name in self.models()],
            f"--grpc-address={bind}",
            f"--grpc-port={cfg.ports.triton_grpc}",
            f"--http-address={bind}",
            f"--http-port={cfg.ports.triton_http}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            f"--metrics-address={bind}",
            f"--metrics-port={cfg.ports.triton_metrics}",
            "--exit-timeout-secs=10",
            "--log-info=true",
            *self.trace_args(),
        ]

    def trace_args(self) -> list[str]:
        """Triton's OpenTelemetry tracing when ``telemetry.triton_traces_url`` is set: every
        request traced (its parent from the request's traceparent header), exported by OTLP/HTTP."""
        url = self.cfg.telemetry.triton_traces_url
        if not url:
            return []
        return [
            "--trace-config", "mode=opentelemetry", "--trace-config", "rate=1", "--trace-config", "level=TIMESTAMPS",
            "--trace-config", f"opentelemetry,url={url}", "--trace-config", "opentelemetry,resource=service.name=triton",
        ]

    def models(self) -> list[str]:
        """The models loaded at start: ``cfg.models.triton_models``; after a restart also
        the intent classifier NLU published (NLU loads it through the model-control API
        when it starts; a Triton restarted after a crash must serve it again by itself)."""
        cfg = self.cfg
        names = [name.strip() for name in cfg.models.triton_models.split(",") if name.strip()]
        intent_dir = Path(cfg.models.repository) / cfg.models.intent_model
        published = intent_dir.is_dir() and any(p.is_dir() and p.name.isdigit() for p in intent_dir.iterdir())
        if self.restarts and published and (intent_dir / "config.pbtxt").is_file() and cfg.models.intent_model not in names:
            names.append(cfg.models.intent_model)
        return names

    def alive(self) -> bool:
        return self._process is not None and self._process.alive()

    def exit_reason(self) -> str:
        code = self._process.returncode if self._process is not None else None
        return f"code {code}; log {self.log_path}"

    def restart(self) -> "TritonServer":
        """After a crash: the old process group killed (its orphaned backend stubs too), a
        new server started; it serves again once its models are loaded."""
        if self._process is not None:
            self._process.stop(timeout=1.0)
        self._process = None
        self.restarts += 1
        return self.start()

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = [str(_bundled_libs(_pytriton_root())), sysconfig.get_config_var("LIBDIR") or ""]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["KEFU_LLM_DIR"] = str(llm_dir(self.cfg))
        env["KEFU_LLM_PRECISION"] = self.cfg.models.llm_precision
        env.setdefault("KEFU_EMBEDDER_BIN", str(weights_path(self.cfg)))  # kefu's tuned file by default
        env["OMP_NUM_THREADS"] = str(self.threads)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        return env

    def start(self) -> "TritonServer":
        if self._process and self._process.alive():
            return self
        if not Path(self.cfg.models.repository).is_dir():
            raise TritonError(f"model repository not found: {self.cfg.models.repository}")
        backends = prepare_backend_dir(self.cfg)
        self._process = ManagedProcess(
            "tritonserver", self.command(backends), log_path=self.log_path, env=self.environment()
        ).start()
        return self

    def log_tail(self, lines: int = 40) -> str:
        return self._process.log_tail(lines) if self._process else "(not started)"

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 180) -> float:
        """Block until every model is loaded; returns the seconds waited."""
        if not self._process:
            raise TritonError("tritonserver was not started")
        try:
            return self._process.wait_until(self.is_ready, timeout=timeout)
        except ProcessFailed as exc:
            raise TritonError(str(exc)) from exc

    def stop(self, timeout: float = 20) -> int | None:
        """SIGINT (Triton unloads models and exits), then SIGKILL of its process group
        (the Python backend stubs are Triton's children) after ``timeout`` s."""
        process, self._process = self._process, None
        return process.stop(timeout=timeout, sig=signal.SIGINT) if process else None

    def __enter__(self) -> "TritonServer":
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
