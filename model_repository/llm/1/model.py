"""Decoupled streaming LLM for Triton's Python backend, on kefu's engine.

The engine (services/serving/llm) runs a Qwen2/Qwen3 decoder with continuous
batching: requests join the running decode loop between steps and leave when they
finish, so concurrent customers share each step. This file only translates Triton
requests into engine requests and engine output into streamed responses: one per
piece of newly completed text, then a final one (finish_reason stop | length |
cancelled) with the final flag.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import queue
import threading
import time

import torch
import triton_python_backend_utils as pb_utils

from services.serving.triton_python import FINAL_FLAG, as_text, param, reply_response, scalar

from services.serving.llm.batcher import GenerationRequest
from services.serving.llm.runtime import load_engine



class _TritonLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log = pb_utils.Logger.log_warn if record.levelno >= logging.WARNING else pb_utils.Logger.log_info
        log(self.format(record))






class ResponsePump:
    """Sends responses from its own thread, in order per stream.

    A send crosses to the Triton server process and waits for it; done inline it
    would stall the decode loop once per token per stream. When sends fall behind
    (many streams at once on few cores), the deltas waiting for one stream are
    merged into one response: fewer, larger messages through Triton, Generation
    and gRPC, and more of the CPU left for decoding.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="llm-responses", daemon=True)
        self._thread.start()

    def delta(self, sender, text: str, completion_tokens: int) -> None:
        self._queue.put((sender, text, "", completion_tokens, None))

    def final(self, sender, text: str, reason: str, completion_tokens: int) -> None:
        self._queue.put((sender, text, reason, completion_tokens, None))

    def error(self, sender, message: str) -> None:
        self._queue.put((sender, "", "", 0, message))

    def _drain(self, first) -> list:
        """``first`` and whatever else is queued, deltas of one stream merged."""
        items = [first]
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        merged: list = []
        pending: dict[int, int] = {}  # id(sender) -> index of its open delta in merged
        for item in items:
            if item is None:
                merged.append(None)
                continue
            sender, text, reason, tokens, error = item
            at = pending.get(id(sender))
            if at is not None and error is None:
                _, prev_text, _, _, _ = merged[at]
                merged[at] = (sender, prev_text + text, reason, tokens, None)
            else:
                merged.append(item)
                at = len(merged) - 1
            if reason or error is not None:
                pending.pop(id(sender), None)
            else:
                pending[id(sender)] = at
        return merged

    def _run(self) -> None:
        closed_since_gc = False
        while True:
            try:
                first = self._queue.get(timeout=0.5 if closed_since_gc else None)
            except queue.Empty:
                # Finished requests' response senders end up in reference cycles, and
                # Triton cannot unload the model while one is alive; an idle stub
                # allocates nothing that would run the collector, so run it here.
                gc.collect()
                closed_since_gc = False
                continue
            for item in self._drain(first):
                if item is None:
                    return
                closed_since_gc = self._send(*item) or closed_since_gc
            first = item = None

    @staticmethod
    def _send(sender, delta: str, reason: str, tokens: int, error: str | None) -> bool:
        """Send one response; True when it closed the stream."""
        final = bool(reason) or error is not None
        try:
            if error is not None:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(error)), flags=FINAL_FLAG)
            else:
                sender.send(reply_response(delta, reason, tokens), flags=FINAL_FLAG if final else 0)
        except Exception as exc:  # noqa: BLE001 - the client went away
            if final:
                try:  # a cancelled stream may refuse the response; it must still be closed
                    sender.send(flags=FINAL_FLAG)
                except Exception:  # noqa: BLE001
                    pb_utils.Logger.log_warn(f"llm: could not close a response stream: {exc}")
        return final

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)


class TritonReplySink:
    """The engine's ReplySink over one request's response sender."""

    # is_cancelled() is a round trip to the server process: asked once per token per
    # stream it costs more than the token itself, so the answer is kept this long.
    CANCEL_CHECK_S = 0.2

    def __init__(self, sender, pump: ResponsePump) -> None:
        self._sender = sender
        self._pump = pump
        self._cancelled = False
        self._checked_at = 0.0

    def is_cancelled(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._checked_at >= self.CANCEL_CHECK_S:
            self._cancelled = self._sender.is_cancelled()
            self._checked_at = now
        return self._cancelled

    def emit(self, text: str, completion_tokens: int) -> None:
        self._pump.delta(self._sender, text, completion_tokens)

    def finish(self, text: str, reason: str, completion_tokens: int) -> None:
        self._pump.final(self._sender, text, reason, completion_tokens)

    def fail(self, message: str) -> None:
        self._pump.error(self._sender, message)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException("the llm model must use the decoupled transaction policy")
        handler = _TritonLogHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        engine_log = logging.getLogger("services.serving.llm")
        engine_log.addHandler(handler)
        engine_log.setLevel(logging.INFO)

        model_dir = os.environ.get("KEFU_LLM_DIR") or param(config, "model_dir", "")
        if not model_dir or not os.path.isdir(model_dir):
            raise pb_utils.TritonModelException(
                f"LLM directory not found: {model_dir!r} (set KEFU_LLM_DIR or the model_dir parameter; run `kefu models fetch`)"
            )
        threads = int(param(config, "num_threads", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        self.pump = ResponsePump()
        self.default_max_tokens = int(param(config, "default_max_tokens", "160"))
        self.max_tokens_limit = int(param(config, "max_tokens_limit", "1024"))
        self.batcher, self.tokenizer = load_engine(
            model_dir,
            precision=os.environ.get("KEFU_LLM_PRECISION") or param(config, "precision", "int8"),
            slots=int(param(config, "max_concurrent_sequences", "8")),
            max_len=int(param(config, "max_sequence_tokens", "4096")),
            prefill_chunk=int(param(config, "prefill_chunk_tokens", "256")),
            stream_interval_s=float(param(config, "stream_interval_ms", "0")) / 1000.0,
        )

    def execute(self, requests):
        for request in requests:
            sink = TritonReplySink(request.get_response_sender(), self.pump)
            try:
                self.batcher.submit(self._engine_request(request), sink)
            except ValueError as exc:
                sink.fail(str(exc))
        return None

    def _engine_request(self, request) -> GenerationRequest:
        prompt = scalar(request, "text_input")
        if prompt is None or not as_text(prompt):
            raise ValueError("text_input is required")
        max_tokens = scalar(request, "max_tokens")
        max_tokens = self.default_max_tokens if max_tokens is None else int(max_tokens)
        if not 1 <= max_tokens <= self.max_tokens_limit:
            raise ValueError(f"max_tokens must be in 1..{self.max_tokens_limit}, got {max_tokens}")
        temperature = scalar(request, "temperature")
        top_p = scalar(request, "top_p")
        seed = scalar(request, "seed")
        min_tokens = scalar(request, "min_tokens")
        stop = pb_utils.get_input_tensor_by_name(request, "stop")
        return GenerationRequest(
            prompt_ids=self.tokenizer(as_text(prompt), add_special_tokens=False).input_ids,
            max_tokens=max_tokens,
            temperature=0.0 if temperature is None else float(temperature),
            top_p=1.0 if top_p is None else float(top_p),
            seed=None if seed is None else int(seed),
            min_tokens=0 if min_tokens is None else int(min_tokens),
            stop=[as_text(s) for s in stop.as_numpy().reshape(-1)] if stop is not None else [],
        )

    def finalize(self):
        self.batcher.stop()
        self.pump.stop()
        self.batcher = None
