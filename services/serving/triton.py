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
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from services.config import KefuConfig
from services.serving.model_files import embedder_bin_path, llm_dir


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
        self._proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def http_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.ports.triton_http}"

    @property
    def grpc_target(self) -> str:
        return self.cfg.triton_grpc_target

    def command(self, backends: Path) -> list[str]:
        cfg = self.cfg
        binary = _pytriton_root() / "tritonserver" / "bin" / "tritonserver"
        # ``bind_host`` (e.g. 0.0.0.0 in a pod) when set; health checks still use ``host``.
        bind = getattr(cfg, "bind_host", "") or cfg.host
        return [
            str(binary),
            f"--model-repository={cfg.models.repository}",
            f"--backend-directory={backends}",
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
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = [str(_bundled_libs(_pytriton_root())), sysconfig.get_config_var("LIBDIR") or ""]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["KEFU_LLM_DIR"] = str(llm_dir(self.cfg))
        env.setdefault("KEFU_EMBEDDER_BIN", str(embedder_bin_path()))
        env["OMP_NUM_THREADS"] = str(self.threads)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        return env

    def start(self) -> "TritonServer":
        if self._proc and self._proc.poll() is None:
            return self
        if not Path(self.cfg.models.repository).is_dir():
            raise TritonError(f"model repository not found: {self.cfg.models.repository}")
        backends = prepare_backend_dir(self.cfg)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._log.write(f"\n==== kefu: starting tritonserver at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            self.command(backends),
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal goes to kefu, which stops Triton itself
        )
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 64 * 1024))
                data = fh.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(data.splitlines()[-lines:])

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 180) -> float:
        """Block until every model is loaded; returns the seconds waited."""
        if not self._proc:
            raise TritonError("tritonserver was not started")
        t0 = time.monotonic()
        while True:
            code = self._proc.poll()
            if code is not None:
                raise TritonError(
                    f"tritonserver exited with code {code} before it was ready; log {self.log_path}:\n{self.log_tail()}"
                )
            if self.is_ready():
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise TritonError(
                    f"tritonserver not ready after {timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGINT (Triton unloads models and exits), then SIGKILL after ``timeout`` s."""
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    # Kill the whole session: Python backend stubs are Triton's children.
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(timeout=10)
            code = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

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
