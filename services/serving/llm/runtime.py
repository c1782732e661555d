"""Loading the engine from a model directory: tokenizer, model, end-of-sequence ids."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from services.serving.llm.batcher import ContinuousBatcher
from services.serving.llm.model import QwenModel

log = logging.getLogger(__name__)


def eos_token_ids(tokenizer, generation_eos=None) -> set[int]:
    eos: set[int] = set()
    for name in ("<|im_end|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(name)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            eos.add(tid)
    if tokenizer.eos_token_id is not None:
        eos.add(int(tokenizer.eos_token_id))
    if isinstance(generation_eos, int):
        eos.add(generation_eos)
    elif generation_eos:
        eos.update(int(t) for t in generation_eos)
    return eos


def load_engine(
    model_dir: str | Path, *, precision: str = "int8", slots: int = 8, max_len: int = 4096, device: str = "cpu",
    prefill_chunk: int = 256, stream_interval_s: float = 0.0,
) -> tuple[ContinuousBatcher, object]:
    """(a started batcher, its tokenizer) for the transformers-format model in ``model_dir``."""
    import json

    from transformers import AutoTokenizer

    t0 = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    gen_cfg = Path(model_dir) / "generation_config.json"
    generation_eos = json.loads(gen_cfg.read_text()).get("eos_token_id") if gen_cfg.exists() else None
    eos = eos_token_ids(tokenizer, generation_eos)
    batcher = ContinuousBatcher(
        lambda: QwenModel.load(model_dir, precision=precision, slots=slots, max_len=max_len, device=device),
        tokenizer, eos, prefill_chunk=prefill_chunk, stream_interval_s=stream_interval_s,
        warmup_ids=tokenizer("你好 hello", add_special_tokens=False).input_ids,
    ).start()
    log.info(
        "llm engine: %s, %s, %d slots x %d tokens, %.0f MB of weights per step, loaded in %.1f s, torch threads %d",
        model_dir, precision, slots, max_len, batcher.model.weight_bytes() / 1e6, time.monotonic() - t0, torch.get_num_threads(),
    )
    return batcher, tokenizer
