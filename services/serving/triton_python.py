"""Helpers shared by kefu's models on Triton's Python backend (importable only
inside a backend stub, where ``triton_python_backend_utils`` exists).

The llm model and the TensorRT-LLM BLS model speak the same contract: text_input
and sampling inputs in; text_output, finish_reason, completion_tokens out.
"""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

# TRITONSERVER_RESPONSE_COMPLETE_FINAL_FLAG; the Python module spells it without _FLAG.
FINAL_FLAG = getattr(pb_utils, "TRITONSERVER_RESPONSE_COMPLETE_FINAL_FLAG", None) or pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def param(config: dict, key: str, default: str = "") -> str:
    """A config.pbtxt parameter; empty or an unfilled ``${template}`` value means ``default``."""
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return default if value == "" or value.startswith("${") else value


def scalar(request, name: str):
    """The first element of an optional input tensor, or None when absent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    arr = tensor.as_numpy().reshape(-1)
    return arr[0] if arr.size else None


def as_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def reply_response(delta: str, finish_reason: str, completion_tokens: int):
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor("text_output", np.array([delta.encode("utf-8")], dtype=np.object_)),
            pb_utils.Tensor("finish_reason", np.array([finish_reason.encode("utf-8")], dtype=np.object_)),
            pb_utils.Tensor("completion_tokens", np.array([completion_tokens], dtype=np.int32)),
        ]
    )
