"""Continuous batching: new requests join the running decode loop between steps,
finished ones leave, and every step advances all active sequences at once.

One thread owns the model. Callers ``submit`` a request with a ``ReplySink``; the
loop calls the sink from its thread with text deltas and one final call.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import torch

from services.serving.llm.model import QwenModel
from services.serving.llm.text import Decoder, IncrementalDetokenizer, StopMatcher

log = logging.getLogger(__name__)


class ReplySink(Protocol):
    """Where a generation's output goes (a Triton response sender, a queue...)."""

    def is_cancelled(self) -> bool: ...
    def emit(self, text: str, completion_tokens: int) -> None: ...
    def finish(self, text: str, reason: str, completion_tokens: int) -> None: ...
    def fail(self, message: str) -> None: ...


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    min_tokens: int = 0  # end-of-sequence is suppressed before this many tokens


@dataclass
class _Sequence:
    request: GenerationRequest
    sink: ReplySink
    detok: IncrementalDetokenizer
    stops: StopMatcher
    generator: torch.Generator | None
    enqueued: float
    slot: int = -1
    prefilled: int = 0  # prompt tokens already in the cache
    generated: list[int] = field(default_factory=list)
    emitted: str = ""  # text sent so far
    emitted_at: float = 0.0
    started: float = 0.0
    first_token_at: float = 0.0

    @property
    def position(self) -> int:
        """Position of the last generated token (the one the next decode step feeds)."""
        return len(self.request.prompt_ids) + len(self.generated) - 1


class ContinuousBatcher:
    """``model`` may be a factory: it is then built on the batcher's own thread.

    All torch work should happen on one thread: OpenMP keeps a team of worker
    threads per calling thread, and on a small machine a second team (say, from
    loading the model on the main thread) costs the decode loop about a third of
    its speed (measured on 2 cores: 31 vs 45 tok/s).
    """

    def __init__(
        self, model: QwenModel | Callable[[], QwenModel], tokenizer: Decoder, eos_ids: Sequence[int], *,
        prefill_chunk: int = 256, warmup_ids: Sequence[int] = (), stream_interval_s: float = 0.0,
    ) -> None:
        self._factory = model if callable(model) and not isinstance(model, QwenModel) else None
        self.model: QwenModel = None if self._factory else model  # type: ignore[assignment]
        self._warmup_ids = list(warmup_ids)
        # After the first text, a sequence's deltas go out at most this often: fewer,
        # larger messages through the serving stack when many streams share the CPU.
        self.stream_interval_s = stream_interval_s
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.tokenizer = tokenizer
        self.eos_ids = frozenset(eos_ids)
        self.prefill_chunk = prefill_chunk
        self._inbox: queue.Queue[_Sequence | None] = queue.Queue()
        self._decoding: list[_Sequence] = []  # occupy slots 0..len-1, in order
        self._prefilling: _Sequence | None = None  # occupies slot len(_decoding)
        self._waiting: list[_Sequence] = []
        self._thread: threading.Thread | None = None
        self._running = False

    # -- caller side ------------------------------------------------------------------
    def submit(self, request: GenerationRequest, sink: ReplySink) -> None:
        problem = self._check(request)
        if problem:
            sink.fail(problem)
            return
        generator = None
        if request.temperature > 0:
            generator = torch.Generator()
            generator.manual_seed(request.seed if request.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
        seq = _Sequence(request, sink, IncrementalDetokenizer(self.tokenizer, self.eos_ids), StopMatcher(request.stop), generator, time.monotonic())
        self._inbox.put(seq)

    def _check(self, r: GenerationRequest) -> str:
        if not r.prompt_ids:
            return "the prompt is empty"
        if r.max_tokens < 1:
            return f"max_tokens must be at least 1, got {r.max_tokens}"
        if len(r.prompt_ids) + r.max_tokens > self.model.max_len:
            return (f"prompt ({len(r.prompt_ids)} tokens) plus max_tokens ({r.max_tokens}) exceeds "
                    f"the context of {self.model.max_len} tokens")
        if not 0 <= r.min_tokens <= r.max_tokens:
            return f"min_tokens must be between 0 and max_tokens ({r.max_tokens}), got {r.min_tokens}"
        if r.temperature < 0 or not 0 < r.top_p <= 1:
            return f"need temperature >= 0 and 0 < top_p <= 1, got {r.temperature}, {r.top_p}"
        return ""

    def start(self, timeout: float = 600.0) -> "ContinuousBatcher":
        """Start the loop thread (building the model there if given a factory); returns when ready."""
        self._running = True
        self._thread = threading.Thread(target=self._run, name="llm-batcher", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the llm engine was not ready after {timeout:.0f} s")
        if self._startup_error is not None:
            raise RuntimeError(f"the llm engine failed to start: {self._startup_error}") from self._startup_error
        return self

    def _run(self) -> None:
        try:
            if self._factory is not None:
                self.model = self._factory()
            if self._warmup_ids:
                # Warm the kernels up so the first customer does not pay for it.
                logits = self.model.prefill(0, self._warmup_ids)
                self.model.decode([0], [int(logits.argmax())], [len(self._warmup_ids)])
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop()

    def stop(self, timeout: float = 30.0) -> None:
        self._running = False
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)


    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        while self._running:
            self._admit(block=not self._decoding and self._prefilling is None and not self._waiting)
            try:
                if self._prefilling is not None:
                    self._prefill_chunk()
                if self._decoding:
                    self._decode_step()
            except Exception as exc:  # noqa: BLE001 - fail the requests, keep serving
                log.exception("llm batcher step failed")
                for seq in [*self._decoding, *([self._prefilling] if self._prefilling else [])]:
                    self._safe(seq.sink.fail, f"generation failed: {type(exc).__name__}: {exc}")
                self._decoding, self._prefilling = [], None
        for seq in [*self._decoding, *self._waiting, *([self._prefilling] if self._prefilling else [])]:
            self._safe(seq.sink.fail, "the model is shutting down")

    def _admit(self, *, block: bool, timeout: float | None = None) -> bool:
        """Take new requests (waiting for one if ``block``); start prefilling the next
        one if a slot is free. False when nothing arrived."""
        arrived = False
        try:
            while True:
                seq = self._inbox.get(block=block and not self._waiting, timeout=timeout)
                block = False
                if seq is None:
                    return arrived
                arrived = True
                self._waiting.append(seq)
        except queue.Empty:
            pass
        self._waiting = [s for s in self._waiting if not self._cancelled_while_waiting(s)]
        if self._prefilling is None and self._waiting and len(self._decoding) < self.model.slots:
            seq = self._waiting.pop(0)
            seq.slot = len(self._decoding)
            seq.started = time.monotonic()
            self._prefilling = seq
        return arrived

    def _cancelled_while_waiting(self, seq: _Sequence) -> bool:
        if seq.sink.is_cancelled():
            self._safe(seq.sink.finish, "", "cancelled", 0)
            return True
        return False

    def _prefill_chunk(self) -> None:
        seq = self._prefilling
        assert seq is not None
        if seq.sink.is_cancelled():
            self._prefilling = None
            self._safe(seq.sink.finish, "", "cancelled", 0)
            return
        prompt = seq.request.prompt_ids
        chunk = prompt[seq.prefilled : seq.prefilled + self.prefill_chunk]
        logits = self.model.prefill(seq.slot, chunk, start=seq.prefilled)
        seq.prefilled += len(chunk)
        if seq.prefilled < len(prompt):
            return
        seq.first_token_at = time.monotonic()
        token = self._sample(logits.unsqueeze(0), [seq])[0]
        self._prefilling = None
        if not self._advance(seq, token):
            self._decoding.append(seq)  # it already sits at slot len(_decoding)

    def _decode_step(self) -> None:
        seqs = self._decoding
        logits = self.model.decode(
            list(range(len(seqs))), [s.generated[-1] for s in seqs], [s.position for s in seqs]
        )
        tokens = self._sample(logits, seqs)
        done = [s for s, t in zip(seqs, tokens, strict=True) if self._advance(s, t)]
        for seq in done:
            self._release(seq)

    def _release(self, seq: _Sequence) -> None:
        """Free a finished sequence's slot, keeping active slots packed at the front."""
        i = self._decoding.index(seq)
        last = len(self._decoding) - 1
        if i != last:
            moved = self._decoding[last]
            self.model.move_slot(last, i, moved.position + 1)
            moved.slot = i
            self._decoding[i] = moved
        self._decoding.pop()
        if self._prefilling is not None:
            # The prefilling sequence sits right after the decoding ones.
            self.model.move_slot(self._prefilling.slot, len(self._decoding), self._prefilling.prefilled)
            self._prefilling.slot = len(self._decoding)

    # -- per token ------------------------------------------------------------------------
    def _sample(self, logits: torch.Tensor, seqs: Sequence[_Sequence]) -> list[int]:
        early = [row for row, seq in enumerate(seqs) if len(seq.generated) < seq.request.min_tokens]
        if early and self.eos_ids:
            logits = logits.clone()
            logits[torch.tensor(early)[:, None], torch.tensor(sorted(self.eos_ids))[None, :]] = float("-inf")
        greedy = logits.argmax(dim=-1).tolist()
        out = []
        for row, seq in enumerate(seqs):
            r = seq.request
            if r.temperature <= 0:
                out.append(int(greedy[row]))
                continue
            probs = torch.softmax(logits[row].float() / r.temperature, dim=-1)
            if r.top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True)
                keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < r.top_p
                sorted_probs = sorted_probs * keep
                pick = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=seq.generator)
                out.append(int(order[pick].item()))
            else:
                out.append(int(torch.multinomial(probs, 1, generator=seq.generator).item()))
        return out

    def _advance(self, seq: _Sequence, token: int) -> bool:
        """Take one generated token; stream what became final. True when the sequence ended."""
        seq.generated.append(token)
        n = len(seq.generated)
        if seq.sink.is_cancelled():
            return self._end(seq, "cancelled", final_text=seq.emitted)
        if token in self.eos_ids:
            return self._end(seq, "stop")
        seq.detok.push(token)
        text = seq.detok.text
        cut = seq.stops.find(text, len(seq.emitted))
        if cut != -1:
            return self._end(seq, "stop", final_text=text[:cut])
        if n >= seq.request.max_tokens:
            return self._end(seq, "length")
        end = seq.stops.safe_end(text)
        now = time.monotonic()
        due = not seq.emitted or now - seq.emitted_at >= self.stream_interval_s
        if end > len(seq.emitted) and due:
            delta = text[len(seq.emitted) : end]
            seq.emitted += delta
            seq.emitted_at = now
            self._safe(seq.sink.emit, delta, n)
        return False

    def _end(self, seq: _Sequence, reason: str, final_text: str | None = None) -> bool:
        if final_text is None:
            seq.detok.flush()
            final_text = seq.detok.text
            cut = seq.stops.find(final_text)
            if cut != -1:
                final_text = final_text[:cut]
        tail = final_text[len(seq.emitted) :] if final_text.startswith(seq.emitted) else ""
        self._safe(seq.sink.finish, tail, reason, len(seq.generated))
        now = time.monotonic()
        log.info(
            "llm: %d tokens, finish=%s, prompt %d tokens, queued %.2f s, ttft %.2f s, decode %.1f tok/s",
            len(seq.generated), reason, len(seq.request.prompt_ids), seq.started - seq.enqueued,
            (seq.first_token_at or now) - seq.enqueued,
            (len(seq.generated) - 1) / max(now - (seq.first_token_at or now), 1e-6),
        )
        return True

    @staticmethod
    def _safe(fn, *args) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a client that went away must not stop the loop
            log.warning("llm: could not deliver to a client", exc_info=True)
