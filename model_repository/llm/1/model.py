"""Decoupled streaming LLM for Triton's Python backend.

One request = one complete ChatML prompt. A worker thread runs the decode loop
(``model(input_ids, past_key_values=..., use_cache=True)``, one token at a time) so
that cancellation is checked between steps, and streams one response per token that
completes new text. Generations run one at a time, in arrival order.

Incremental detokenisation decodes all generated tokens each step and emits only the
part of the text that can no longer change: a trailing U+FFFD (a multi-byte character
split across tokens, common in Chinese) is held back, and so is any suffix that may be
the beginning of a stop string.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import traceback

import numpy as np
import triton_python_backend_utils as pb_utils

REPLACEMENT = "\ufffd"
# TRITONSERVER_RESPONSE_COMPLETE_FINAL_FLAG; the Python module spells it without _FLAG.
FINAL_FLAG = getattr(pb_utils, "TRITONSERVER_RESPONSE_COMPLETE_FINAL_FLAG", None) or pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _param(model_config: dict, key: str, default: str) -> str:
    value = model_config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value != "" else default


def _scalar(request, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    arr = tensor.as_numpy().reshape(-1)
    return arr[0] if arr.size else None


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class StopMatcher:
    """Cuts text at the first stop string and tells how much of it is safe to emit."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]

    def find(self, text: str, start: int = 0) -> int:
        """Index of the first stop string that ends at or after ``start``, or -1."""
        best = -1
        for s in self.stops:
            i = text.find(s, max(0, start - len(s) + 1))
            if i != -1 and (best == -1 or i < best):
                best = i
        return best

    def safe_end(self, text: str) -> int:
        """Length of ``text`` minus the longest suffix that is a proper prefix of a stop string."""
        hold = 0
        for s in self.stops:
            for j in range(min(len(s) - 1, len(text)), hold, -1):
                if text.endswith(s[:j]):
                    hold = j
                    break
        return len(text) - hold


class Job:
    def __init__(self, request, sender):
        self.request = request
        self.sender = sender
        self.enqueued = time.monotonic()


class TritonPythonModel:
    def initialize(self, args):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.logger = pb_utils.Logger
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException("the llm model must use the decoupled transaction policy")

        model_dir = os.environ.get("KEFU_LLM_DIR") or _param(config, "model_dir", "")
        if not model_dir or not os.path.isdir(model_dir):
            raise pb_utils.TritonModelException(
                f"LLM directory not found: {model_dir!r} (set KEFU_LLM_DIR or the model_dir parameter; "
                "run `kefu models fetch`)"
            )
        threads = int(_param(config, "num_threads", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        self.default_max_tokens = int(_param(config, "default_max_tokens", "160"))
        self.max_tokens_limit = int(_param(config, "max_tokens_limit", "1024"))
        self.max_prompt_tokens = int(_param(config, "max_prompt_tokens", "4096"))

        t0 = time.monotonic()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        self.model.eval()

        eos: set[int] = set()
        for tok in ("<|im_end|>", "<|endoftext|>"):
            tid = self.tokenizer.convert_tokens_to_ids(tok)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                eos.add(tid)
        if self.tokenizer.eos_token_id is not None:
            eos.add(int(self.tokenizer.eos_token_id))
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(gen_eos, int):
            eos.add(gen_eos)
        elif gen_eos:
            eos.update(int(t) for t in gen_eos)
        self.eos_ids = eos

        # Warm up once so the first customer does not pay for lazy initialisation.
        with torch.inference_mode():
            ids = self.tokenizer("你好", return_tensors="pt", add_special_tokens=False).input_ids
            self.model(ids, use_cache=True)
        self.logger.log_info(
            f"llm: loaded {model_dir} in {time.monotonic() - t0:.1f} s, "
            f"torch threads={torch.get_num_threads()}, eos={sorted(self.eos_ids)}"
        )

        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="llm-decode", daemon=True)
        self.worker.start()

    def execute(self, requests):
        for request in requests:
            self.jobs.put(Job(request, request.get_response_sender()))
        return None

    def finalize(self):
        self.jobs.put(None)
        self.worker.join(timeout=30)

    # ------------------------------------------------------------------ worker

    def _work(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                self._generate(job)
            except Exception as exc:  # never let one request kill the stub
                self.logger.log_error(f"llm: request failed: {exc}\n{traceback.format_exc()}")
                self._send_error(job.sender, f"llm generation failed: {type(exc).__name__}: {exc}")
            finally:
                # Triton unloads the model only once every request object is released.
                job = None

    def _send_error(self, sender, message: str) -> None:
        try:
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(message)),
                flags=FINAL_FLAG,
            )
        except Exception as exc:
            self.logger.log_warn(f"llm: could not send error response: {exc}")

    @staticmethod
    def _response(text: str, finish_reason: str, completion_tokens: int):
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_)),
                pb_utils.Tensor("finish_reason", np.array([finish_reason.encode("utf-8")], dtype=np.object_)),
                pb_utils.Tensor("completion_tokens", np.array([completion_tokens], dtype=np.int32)),
            ]
        )

    def _finish(self, sender, text: str, reason: str, n: int) -> None:
        flag = FINAL_FLAG
        try:
            sender.send(self._response(text, reason, n), flags=flag)
        except Exception:
            # A cancelled stream may refuse responses; closing it is still required.
            try:
                sender.send(flags=flag)
            except Exception as exc:
                self.logger.log_warn(f"llm: could not close response stream: {exc}")

    def _generate(self, job: Job) -> None:
        torch = self.torch
        request, sender = job.request, job.sender
        if sender.is_cancelled():
            self._finish(sender, "", "cancelled", 0)
            return

        prompt = _scalar(request, "text_input")
        if prompt is None:
            self._send_error(sender, "text_input is required")
            return
        prompt = _text(prompt)
        max_tokens = _scalar(request, "max_tokens")
        max_tokens = self.default_max_tokens if max_tokens is None else int(max_tokens)
        if max_tokens < 1 or max_tokens > self.max_tokens_limit:
            self._send_error(sender, f"max_tokens must be in 1..{self.max_tokens_limit}, got {max_tokens}")
            return
        temperature = _scalar(request, "temperature")
        temperature = 0.0 if temperature is None else float(temperature)
        top_p = _scalar(request, "top_p")
        top_p = 1.0 if top_p is None else float(top_p)
        if temperature < 0 or not (0 < top_p <= 1):
            self._send_error(sender, f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
            return
        seed = _scalar(request, "seed")
        stop_tensor = pb_utils.get_input_tensor_by_name(request, "stop")
        stops = [_text(s) for s in stop_tensor.as_numpy().reshape(-1)] if stop_tensor is not None else []
        matcher = StopMatcher(stops)

        input_ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        if input_ids.shape[1] == 0:
            self._send_error(sender, "text_input is empty")
            return
        if input_ids.shape[1] > self.max_prompt_tokens:
            self._send_error(sender, f"prompt has {input_ids.shape[1]} tokens, limit {self.max_prompt_tokens}")
            return

        generator = None
        if temperature > 0:
            generator = torch.Generator()
            generator.manual_seed(int(seed) if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)

        t0 = time.monotonic()
        generated: list[int] = []
        emitted = ""  # text sent so far; always a prefix of the final text
        reason = "length"
        stop_string_hit = False
        final_text = ""
        past = None
        step_ids = input_ids
        with torch.inference_mode():
            while len(generated) < max_tokens:
                if sender.is_cancelled():
                    reason = "cancelled"
                    break
                out = self.model(step_ids, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = self._sample(out.logits[0, -1, :].float(), temperature, top_p, generator)
                generated.append(token)
                if token in self.eos_ids:
                    reason = "stop"
                    break
                step_ids = torch.tensor([[token]], dtype=input_ids.dtype)

                # Hold back an incomplete multi-byte character at the end.
                visible = self._decode(generated).rstrip(REPLACEMENT)
                cut = matcher.find(visible, len(emitted))
                if cut != -1:
                    final_text = visible[:cut]
                    reason, stop_string_hit = "stop", True
                    break
                end = matcher.safe_end(visible)
                if end > len(emitted) and visible.startswith(emitted):
                    delta = visible[len(emitted):end]
                    emitted += delta
                    sender.send(self._response(delta, "", len(generated)))
        del past

        if reason == "cancelled":
            final_text = emitted
        elif not stop_string_hit:
            # Flush what was held back for a possible stop string. A character left
            # incomplete by max_tokens is dropped rather than sent as U+FFFD.
            final_text = self._decode([t for t in generated if t not in self.eos_ids]).rstrip(REPLACEMENT)
        # The last response carries whatever of the final text was not sent yet.
        tail = final_text[len(emitted):] if final_text.startswith(emitted) else ""
        self._finish(sender, tail, reason, len(generated))
        dt = time.monotonic() - t0
        self.logger.log_info(
            f"llm: {len(generated)} tokens in {dt:.2f} s ({len(generated) / max(dt, 1e-6):.1f} tok/s), "
            f"prompt {input_ids.shape[1]} tokens, finish={reason}, queued {t0 - job.enqueued:.2f} s"
        )

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _sample(self, logits, temperature: float, top_p: float, generator) -> int:
        torch = self.torch
        if temperature <= 0:
            return int(torch.argmax(logits).item())
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1.0:
            sorted_probs, sorted_idx = torch.sort(probs, descending=True)
            cumulative = torch.cumsum(sorted_probs, dim=-1)
            # Keep the smallest set whose mass reaches top_p (always at least one token).
            keep = cumulative - sorted_probs < top_p
            sorted_probs = sorted_probs * keep
            choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
            return int(sorted_idx[choice].item())
        return int(torch.multinomial(probs, 1, generator=generator).item())
