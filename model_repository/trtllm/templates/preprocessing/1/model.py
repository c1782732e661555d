"""kefu preprocessing for TensorRT-LLM's inflight batcher (Triton Python backend).

QUERY is a complete prompt (the caller applied Qwen's chat template). Each request
may carry a batch of rows ([B, 1]); every row is tokenized, the ids are padded to the
longest row with the pad id, and stop/bad words become TensorRT-LLM's word-list
tensors ([B, 2, L]: the concatenated ids, then the end offset of each word, padded
with -1).
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from transformers import AutoTokenizer


def _param(config: dict, key: str, default: str = "") -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return default if value == "" or value.startswith("${") else value


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        tokenizer_dir = _param(config, "tokenizer_dir")
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
        self.add_special_tokens = _param(config, "add_special_tokens", "false").lower() == "true"
        self.max_input_len = int(_param(config, "max_input_len", "0"))
        self.end_id = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        self.pad_id = self.end_id if pad is None else pad
        self.default_stop_words = [str(w) for w in json.loads(_param(config, "default_stop_words", "[]"))]

    def _word_list(self, rows: list[list[str]]) -> np.ndarray:
        """TensorRT-LLM's word-list format for a batch of word lists."""
        encoded = []
        for words in rows:
            ids: list[int] = []
            offsets: list[int] = []
            for word in words:
                tokens = self.tokenizer.encode(word, add_special_tokens=False) if word else []
                if tokens:
                    ids.extend(tokens)
                    offsets.append(len(ids))
            encoded.append((ids, offsets))
        width = max([1] + [max(len(i), len(o)) for i, o in encoded])
        out = np.zeros((len(rows), 2, width), dtype=np.int32)
        out[:, 1, :] = -1
        for b, (ids, offsets) in enumerate(encoded):
            out[b, 0, : len(ids)] = ids
            out[b, 1, : len(offsets)] = offsets
        return out

    def _words(self, request, name: str, batch: int, defaults: list[str]) -> list[list[str]]:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return [list(defaults) for _ in range(batch)]
        arr = tensor.as_numpy().reshape(batch, -1)
        return [list(defaults) + [_text(w) for w in row if _text(w)] for row in arr]

    def _ids(self, request, name: str, batch: int, default: int) -> np.ndarray:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return np.full((batch, 1), default, dtype=np.int32)
        return tensor.as_numpy().astype(np.int32).reshape(batch, 1)

    def _one(self, request):
        queries = pb_utils.get_input_tensor_by_name(request, "QUERY").as_numpy().reshape(-1)
        batch = len(queries)
        ids = [self.tokenizer.encode(_text(q), add_special_tokens=self.add_special_tokens) for q in queries]
        if any(len(row) == 0 for row in ids):
            raise ValueError("QUERY is empty")
        longest = max(len(row) for row in ids)
        if self.max_input_len and longest > self.max_input_len:
            raise ValueError(f"prompt has {longest} tokens, more than max_input_len={self.max_input_len}")
        pad_ids = self._ids(request, "PAD_ID", batch, self.pad_id)
        input_ids = np.empty((batch, longest), dtype=np.int32)
        for b, row in enumerate(ids):
            input_ids[b, :] = pad_ids[b, 0]
            input_ids[b, : len(row)] = row
        output_len = pb_utils.get_input_tensor_by_name(request, "REQUEST_OUTPUT_LEN").as_numpy()
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("INPUT_ID", input_ids),
                pb_utils.Tensor("REQUEST_INPUT_LEN", np.array([[len(row)] for row in ids], dtype=np.int32)),
                pb_utils.Tensor("REQUEST_OUTPUT_LEN", output_len.astype(np.int32).reshape(batch, 1)),
                pb_utils.Tensor("STOP_WORDS_IDS", self._word_list(self._words(request, "STOP_WORDS_DICT", batch, self.default_stop_words))),
                pb_utils.Tensor("BAD_WORDS_IDS", self._word_list(self._words(request, "BAD_WORDS_DICT", batch, []))),
                pb_utils.Tensor("OUT_END_ID", self._ids(request, "END_ID", batch, self.end_id)),
                pb_utils.Tensor("OUT_PAD_ID", pad_ids),
            ]
        )

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except Exception as exc:  # one bad request must not fail the others in the batch
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"preprocessing: {exc}")))
        return responses
