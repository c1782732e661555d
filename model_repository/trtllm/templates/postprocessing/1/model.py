"""kefu postprocessing for TensorRT-LLM's inflight batcher (Triton Python backend).

TOKENS_BATCH is tensorrt_llm's output_ids, [B, beams, T]; SEQUENCE_LENGTH, [B, beams],
says how many of them are valid. Each beam becomes one string. Stateless: for
Chinese-safe streaming use tensorrt_llm_bls, which decodes incrementally.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from transformers import AutoTokenizer


def _param(config: dict, key: str, default: str = "") -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return default if value == "" or value.startswith("${") else value


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.tokenizer = AutoTokenizer.from_pretrained(_param(config, "tokenizer_dir"), trust_remote_code=False)
        self.skip_special_tokens = _param(config, "skip_special_tokens", "true").lower() == "true"

    def _decode(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        batch, beams = lengths.shape
        out = np.empty((batch, beams), dtype=np.object_)
        for b in range(batch):
            for k in range(beams):
                ids = tokens[b, k, : int(lengths[b, k])].tolist()
                text = self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens, clean_up_tokenization_spaces=False)
                out[b, k] = text.encode("utf-8")
        return out

    def execute(self, requests):
        responses = []
        for request in requests:
            tokens = pb_utils.get_input_tensor_by_name(request, "TOKENS_BATCH").as_numpy()
            lengths = pb_utils.get_input_tensor_by_name(request, "SEQUENCE_LENGTH").as_numpy()
            if tokens.ndim == 2:  # [beams, T] from an unbatched caller
                tokens, lengths = tokens[None], lengths.reshape(1, -1)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT", self._decode(tokens, lengths))]))
        return responses
