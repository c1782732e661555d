"""Child processes of the local kefu stack: started with a log file, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence


class ProcessFailed(RuntimeError):
    pass


class ManagedProcess:
    """One child process in its own session, its output appended to ``log_path``."""

    def __init__(self, name: str, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else dict(os.environ)
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "ManagedProcess":
        if self.alive():
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._log.write(f"\n==== kefu: starting {self.name} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops children in order
        )
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 32 * 1024))
                return "\n".join(fh.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_until(self, check: Callable[[], bool], *, timeout: float, what: str = "ready") -> float:
        """Poll ``check`` until true; fail early with the log tail if the process dies."""
        t0 = time.monotonic()
        while True:
            if self._proc is None:
                raise ProcessFailed(f"{self.name} was not started")
            code = self._proc.poll()
            if code is not None:
                raise ProcessFailed(f"{self.name} exited with code {code} before it was {what}; log {self.log_path}:\n{self.log_tail()}")
            if check():
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise ProcessFailed(f"{self.name} not {what} after {timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.2)

    def send_signal(self, sig: int) -> None:
        if self.alive():
            assert self._proc is not None
            self._proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the process to exit by itself; its exit code, or None if it did not."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int | None:
        """``sig``, then SIGKILL of the process group after ``timeout`` seconds. Whatever
        is left of the group once the process is gone (Triton's Python backend stubs,
        orphaned by a crash and deaf to SIGTERM) is killed too: stopping leaves no orphan."""
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _kill_group(proc.pid)
                    proc.wait(timeout=10)
            _kill_group(proc.pid)
            code = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def restart(self) -> "ManagedProcess":
        """After the process exited: its group's leftovers killed, then started again."""
        self.stop(timeout=1.0)
        return self.start()


def _kill_group(pgid: int) -> None:
    """SIGKILL every process still in the group (the child led its own session)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Supervisor:
    """Restarts crashed children with backoff and says so (``kefu up``).

    Each child is registered with how to tell it is alive and how to restart it. ``check``
    (called every few seconds) restarts a dead child after a delay that doubles with each
    crash (``backoff_s`` up to ``max_backoff_s``) and resets once the child stayed up
    ``stable_s``; more than ``max_restarts`` crashes of one child within ``window_s`` is
    a crash loop, and ``check`` raises ProcessFailed so the stack stops instead of
    spinning.
    """

    def __init__(
        self, *, backoff_s: float = 1.0, max_backoff_s: float = 30.0, stable_s: float = 60.0, max_restarts: int = 5,
        window_s: float = 600.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._children: dict[str, tuple[Callable[[], bool], Callable[[], object], Callable[[], str]]] = {}
        self._crashes: dict[str, list[float]] = {}
        self._due: dict[str, float] = {}
        self._up_since: dict[str, float] = {}
        self.backoff_s, self.max_backoff_s, self.stable_s = backoff_s, max_backoff_s, stable_s
        self.max_restarts, self.window_s = max_restarts, window_s
        self._clock = clock

    def watch(self, name: str, *, alive: Callable[[], bool], restart: Callable[[], object], why: Callable[[], str] = lambda: "") -> None:
        self._children[name] = (alive, restart, why)
        self._up_since[name] = self._clock()

    def restarts(self, name: str) -> int:
        return len(self._crashes.get(name, []))

    def check(self) -> list[str]:
        """Restart what is due; lines saying what happened."""
        now = self._clock()
        lines = []
        for name, (alive, restart, why) in self._children.items():
            if alive():
                if name not in self._due and now - self._up_since[name] >= self.stable_s:
                    self._crashes[name] = []  # it stayed up: the next crash starts the backoff over
                continue
            if name not in self._due:
                crashes = [t for t in self._crashes.get(name, []) if now - t < self.window_s] + [now]
                self._crashes[name] = crashes
                if len(crashes) > self.max_restarts:
                    raise ProcessFailed(f"{name} crashed {len(crashes)} times in {self.window_s:.0f} s; giving up ({why()})")
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (len(crashes) - 1))
                self._due[name] = now + delay
                lines.append(f"kefu: {name} exited unexpectedly ({why()}); restarting in {delay:.3g} s (restart {len(crashes)})")
            if now >= self._due[name]:
                del self._due[name]
                restart()
                self._up_since[name] = now
                lines.append(f"kefu: {name} restarted")
        return lines


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
