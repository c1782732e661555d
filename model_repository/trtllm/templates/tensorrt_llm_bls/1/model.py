"""kefu's BLS model over TensorRT-LLM (Triton Python backend, decoupled).

Same contract as kefu's CPU `llm` model, so Generation needs no change beyond the
model name: text_input (a complete ChatML prompt), optional max_tokens, temperature,
top_p, top_k, repetition_penalty, seed, stop (strings) and stream; responses carry
text_output (new text since the previous response), finish_reason (empty until the
last response: stop | length | cancelled) and completion_tokens.

Each request runs on a worker thread: it calls `tensorrt_llm` in streaming mode and,
with accumulate_tokens, keeps every output id of the request and decodes
incrementally (kefu's IncrementalDetokenizer), so only completed text is sent, never
a trailing U+FFFD or half a Chinese character. Stop strings are matched on the text
(kefu's StopMatcher): a suffix that may start a stop string is held back, and a
match ends the reply and cancels the engine request.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, NamedTuple

import numpy as np
import triton_python_backend_utils as pb_utils

from services.serving.triton_python import FINAL_FLAG, as_text, param, reply_response, scalar
from transformers import AutoTokenizer

from services.serving.llm.text import IncrementalDetokenizer, StopMatcher







def _one(name: str, value, dtype) -> "pb_utils.Tensor":
    """A [1, 1] tensor: tensorrt_llm batches, so every input has a batch dimension."""
    return pb_utils.Tensor(name, np.array([[value]], dtype=dtype))


class _Request(NamedTuple):  # not a dataclass: the backend may load this file outside sys.modules
    ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float | None
    seed: int | None
    min_tokens: int
    stop: list[str]
    stream: bool


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        self.trtllm = param(config, "tensorrt_llm_model_name", "tensorrt_llm")
        self.tokenizer = AutoTokenizer.from_pretrained(param(config, "tokenizer_dir"), trust_remote_code=False)
        self.accumulate = param(config, "accumulate_tokens", "true").lower() == "true"
        self.default_max_tokens = int(param(config, "default_max_tokens", "160"))
        self.max_tokens_limit = int(param(config, "max_tokens_limit", "1024"))
        self.max_input_len = int(param(config, "max_input_len", "0"))
        self.end_id = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        self.pad_id = self.end_id if pad is None else pad
        self.skip = frozenset(self.tokenizer.all_special_ids)
        self.stop_words_list = self._word_list(json.loads(param(config, "default_stop_words", "[]")))
        workers = max(1, int(param(config, "max_concurrent_requests", "64")))
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kefu-bls")

    def _word_list(self, words: list[str]):
        """Stop words that are special tokens (e.g. <|endoftext|>) end the engine request
        itself, in TensorRT-LLM's [1, 2, L] word-list format; None when there are none."""
        ids: list[int] = []
        offsets: list[int] = []
        for word in words:
            tokens = self.tokenizer.encode(str(word), add_special_tokens=False)
            if tokens:
                ids.extend(tokens)
                offsets.append(len(ids))
        if not ids:
            return None
        out = np.full((1, 2, len(ids)), -1, dtype=np.int32)
        out[0, 0, :] = ids
        out[0, 1, : len(offsets)] = offsets
        return out

    # -- requests ---------------------------------------------------------------

    def _parse(self, request) -> _Request:
        prompt = scalar(request, "text_input")
        if prompt is None or not as_text(prompt):
            raise ValueError("text_input is required")
        ids = self.tokenizer.encode(as_text(prompt), add_special_tokens=False)
        if self.max_input_len and len(ids) > self.max_input_len:
            raise ValueError(f"prompt has {len(ids)} tokens, more than max_input_len={self.max_input_len}")
        max_tokens = scalar(request, "max_tokens")
        max_tokens = self.default_max_tokens if max_tokens is None or int(max_tokens) == 0 else int(max_tokens)
        if not 1 <= max_tokens <= self.max_tokens_limit:
            raise ValueError(f"max_tokens must be in 1..{self.max_tokens_limit}, got {max_tokens}")
        temperature = scalar(request, "temperature")
        temperature = 0.0 if temperature is None else float(temperature)
        if not 0.0 <= temperature <= 2.0:
            raise ValueError("temperature must be between 0 and 2")
        top_p = scalar(request, "top_p")
        top_p = 1.0 if top_p is None or float(top_p) == 0.0 else float(top_p)
        if not 0.0 < top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        top_k = scalar(request, "top_k")
        penalty = scalar(request, "repetition_penalty")
        seed = scalar(request, "seed")
        min_tokens = scalar(request, "min_tokens")
        stop = pb_utils.get_input_tensor_by_name(request, "stop")
        stream = scalar(request, "stream")
        return _Request(
            ids=ids,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=0 if top_k is None else int(top_k),
            repetition_penalty=None if penalty is None else float(penalty),
            seed=None if seed is None else int(seed),
            min_tokens=0 if min_tokens is None else int(min_tokens),
            stop=[as_text(s) for s in stop.as_numpy().reshape(-1)] if stop is not None else [],
            stream=True if stream is None else bool(stream),
        )

    def _engine_inputs(self, req: _Request) -> list:
        inputs = [
            pb_utils.Tensor("input_ids", np.array([req.ids], dtype=np.int32)),
            _one("input_lengths", len(req.ids), np.int32),
            _one("request_output_len", req.max_tokens, np.int32),
            _one("end_id", self.end_id, np.int32),
            _one("pad_id", self.pad_id, np.int32),
            _one("streaming", self.decoupled, np.bool_),
            _one("exclude_input_in_output", True, np.bool_),
        ]
        if req.temperature > 0.0:
            inputs += [_one("temperature", req.temperature, np.float32), _one("runtime_top_p", req.top_p, np.float32)]
            if req.top_k > 0:
                inputs.append(_one("runtime_top_k", req.top_k, np.int32))
        else:  # greedy
            inputs.append(_one("runtime_top_k", 1, np.int32))
        if req.repetition_penalty is not None:
            inputs.append(_one("repetition_penalty", req.repetition_penalty, np.float32))
        if req.seed is not None:
            inputs.append(_one("seed", req.seed & 0xFFFFFFFFFFFFFFFF, np.uint64))
        if req.min_tokens > 0:
            inputs.append(_one("min_tokens", req.min_tokens, np.int32))
        if self.stop_words_list is not None:
            inputs.append(pb_utils.Tensor("stop_words_list", self.stop_words_list))
        return inputs

    @staticmethod
    def _new_ids(response) -> list[int]:
        """The ids in one tensorrt_llm response (only the new ones when streaming)."""
        out = pb_utils.get_output_tensor_by_name(response, "output_ids")
        if out is None:
            return []
        ids = out.as_numpy().reshape(-1)  # [1, beam=1, T]
        length = pb_utils.get_output_tensor_by_name(response, "sequence_length")
        if length is not None:
            ids = ids[: int(length.as_numpy().reshape(-1)[0])]
        return [int(t) for t in ids]

    def _events(self, req: _Request, cancelled: Callable[[], bool]) -> Iterator[tuple[str, str, int]]:
        """(new text, finish_reason, completion tokens); finish_reason is set on the last."""
        engine = pb_utils.InferenceRequest(
            model_name=self.trtllm,
            requested_output_names=["output_ids", "sequence_length"],
            inputs=self._engine_inputs(req),
        )
        responses = engine.exec(decoupled=self.decoupled)
        if not self.decoupled:
            responses = [responses]
        detok = IncrementalDetokenizer(self.tokenizer, skip=self.skip)
        stops = StopMatcher(req.stop)
        text, sent, tokens, finish = "", 0, 0, ""
        for response in responses:
            if cancelled():
                finish = "cancelled"
                break
            if response.has_error():
                raise RuntimeError(f"{self.trtllm}: {response.error().message()}")
            new = [t for t in self._new_ids(response) if t not in (self.end_id, self.pad_id)]
            if not new:
                continue
            tokens += len(new)
            if self.accumulate:
                for t in new:
                    detok.push(t)
                text = detok.text
            else:  # TensorRT-LLM's reference behaviour: each chunk alone (garbles split characters)
                text += self.tokenizer.decode(new, skip_special_tokens=True)
            cut = stops.find(text, sent)
            if cut != -1:
                text, finish = text[:cut], "stop"
                break
            end = stops.safe_end(text)
            if end > sent:
                yield text[sent:end], "", tokens
                sent = end
        else:
            if self.accumulate:
                detok.flush()
                text = detok.text
            cut = stops.find(text, sent)
            text = text[:cut] if cut != -1 else text
            finish = "stop" if cut != -1 or tokens < req.max_tokens else "length"
        if finish == "cancelled" or (finish == "stop" and self.decoupled):
            cancel = getattr(responses, "cancel", None)  # Triton >= 24.x: stop the engine request
            if callable(cancel):
                cancel()
        yield ("" if finish == "cancelled" else text[sent:]), finish, tokens

    # -- Triton entry points ------------------------------------------------------

    def execute(self, requests):
        if not self.decoupled:
            return [self._whole(request) for request in requests]
        for request in requests:
            self.pool.submit(self._stream, request, request.get_response_sender())
        return None

    def _whole(self, request):
        try:
            req = self._parse(request)
            is_cancelled = getattr(request, "is_cancelled", lambda: False)
            events = list(self._events(req, is_cancelled))
            _, finish, tokens = events[-1]
            return reply_response("".join(text for text, _, _ in events), finish, tokens)
        except Exception as exc:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))

    def _stream(self, request, sender) -> None:
        try:
            req = self._parse(request)
            is_cancelled = getattr(sender, "is_cancelled", lambda: False)
            held = ""  # stream=false: one response at the end
            for text, finish, tokens in self._events(req, is_cancelled):
                if finish:
                    try:
                        sender.send(reply_response(held + text, finish, tokens), flags=FINAL_FLAG)
                    except Exception:
                        sender.send(flags=FINAL_FLAG)  # a cancelled stream may refuse it; close it anyway
                    return
                if not req.stream:
                    held += text
                elif text:
                    sender.send(reply_response(text, "", tokens))
        except Exception as exc:
            try:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))), flags=FINAL_FLAG)
            except Exception:
                pb_utils.Logger.log_error(f"tensorrt_llm_bls: could not report {exc!r}")

    def finalize(self):
        self.pool.shutdown(wait=True)
