"""A local trace backend with a UI for ``kefu up --traces``: Arize Phoenix, an
OpenTelemetry-native trace server (``arize-phoenix`` on PyPI, Elastic License 2.0: fine for
a local tool). It is large (~860 MB), so it lives in a virtualenv of its own
(``.venv-phoenix/``, made on first use, pinned) and is never a dependency of kefu itself.
Phoenix receives OTLP/gRPC on ``ports.phoenix_grpc`` and serves its UI on ``ports.phoenix``;
kefu's processes export their spans and metrics to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

from services.config import REPO_ROOT, KefuConfig
from services.processes import ManagedProcess, ProcessFailed, port_open

PHOENIX = "arize-phoenix==20.26.1"
VENV = REPO_ROOT / ".venv-phoenix"


def ensure_phoenix(progress: Callable[[str], None] = print) -> Path:
    """The ``phoenix`` command, installing Phoenix into its own virtualenv the first time."""
    stamp = VENV / ".kefu-installed"
    binary = VENV / "bin" / "phoenix"
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == PHOENIX:
        return binary
    progress(f"traces: installing {PHOENIX} into {VENV} (once; about a minute and 860 MB)")
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    done = subprocess.run([str(VENV / "bin" / "pip"), "install", "--progress-bar", "off", "-q", PHOENIX], capture_output=True, text=True)
    if done.returncode != 0:
        raise ProcessFailed(f"could not install {PHOENIX}: {done.stderr.strip()[-800:]}")
    stamp.write_text(PHOENIX + "\n")
    return binary


def start_phoenix(cfg: KefuConfig, progress: Callable[[str], None] = print) -> ManagedProcess:
    """Start Phoenix and point kefu's telemetry at it (call before the stack starts)."""
    binary = ensure_phoenix(progress)
    home = cfg.home_path / "phoenix"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{VENV / 'bin'}:/usr/bin:/bin", "HOME": str(home), "PHOENIX_WORKING_DIR": str(home),
        "PHOENIX_HOST": cfg.host, "PHOENIX_PORT": str(cfg.ports.phoenix), "PHOENIX_GRPC_PORT": str(cfg.ports.phoenix_grpc),
    }
    proc = ManagedProcess("phoenix", [str(binary), "serve"], log_path=cfg.home_path / "logs" / "phoenix.log", env=env).start()
    took = proc.wait_until(lambda: port_open(cfg.host, cfg.ports.phoenix) and port_open(cfg.host, cfg.ports.phoenix_grpc), timeout=180)
    cfg.telemetry.exporter = "otlp"
    cfg.telemetry.otlp_endpoint = f"http://{cfg.host}:{cfg.ports.phoenix_grpc}"
    progress(f"traces: Phoenix ready in {took:.1f} s; open http://{cfg.host}:{cfg.ports.phoenix} (spans at /v1/projects/default/spans)")
    return proc
