"""How much the engine's faster precisions change what the model says.

    .venv/bin/python bench/llm_quality.py [int8 bf16 ...]

Greedy replies of the fp32 engine to grounded FAQ prompts (the demo pack, zh + en,
the prompt Generation builds) are the reference; each precision is then
teacher-forced along them and scored by top-1 agreement (the share of positions
where it would have picked the same next token), with its decode speed at 1 and 8
sequences. Set OMP_NUM_THREADS to pin threads.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from services.config import load_config  # noqa: E402
from services.demo.pack import load_domain_pack  # noqa: E402
from services.generation.prompt import PromptPassage, ReplyPrompt, build_messages, render_chatml  # noqa: E402
from services.serving.llm.model import QwenModel  # noqa: E402
from services.serving.model_files import ensure_models  # noqa: E402


def greedy(model: QwenModel, ids: list[int], n: int, eos: int) -> list[int]:
    logits = model.prefill(0, ids)
    out, pos, nxt = [], len(ids), int(logits.argmax())
    for _ in range(n):
        out.append(nxt)
        if nxt == eos:
            break
        logits = model.decode([0], [nxt], [pos])[0]
        pos += 1
        nxt = int(logits.argmax())
    return out


def agreement(model: QwenModel, refs: list[tuple[list[int], list[int]]]) -> float:
    agree = total = 0
    for ids, out in refs:
        logits = model.prefill(0, ids)
        pos = len(ids)
        for t in out:
            agree += int(logits.argmax()) == t
            total += 1
            logits = model.decode([0], [t], [pos])[0]
            pos += 1
    return agree / total


def speed(model: QwenModel, ids: list[int], batch: int, steps: int = 20) -> float:
    for s in range(batch):
        model.prefill(s, ids)
    t0 = time.perf_counter()
    for i in range(steps):
        model.decode(list(range(batch)), [100] * batch, [len(ids) + i] * batch)
    return batch * steps / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("precisions", nargs="*", default=["int8", "bf16"])
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    cfg = load_config()
    model_dir = ensure_models(cfg, progress=lambda line: print(line, file=sys.stderr)).llm_dir
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    faq = load_domain_pack(cfg.domain_pack).faq[:: max(1, len(load_domain_pack(cfg.domain_pack).faq) // args.prompts)][: args.prompts]
    prompts = [
        render_chatml(build_messages(ReplyPrompt(f.questions[-1], f.locale, [PromptPassage(f.id, f.title, f.answer)])))
        for f in faq
    ]
    ids = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    reference = QwenModel.load(model_dir, precision="fp32", slots=8, max_len=1024)
    refs = [(i, greedy(reference, i, args.tokens, eos)) for i in ids]
    rows = [("fp32", 1.0, speed(reference, ids[0], 1), speed(reference, ids[0], 8))]
    del reference
    for precision in args.precisions:
        model = QwenModel.load(model_dir, precision=precision, slots=8, max_len=1024)
        rows.append((precision, agreement(model, refs), speed(model, ids[0], 1), speed(model, ids[0], 8)))
        del model
    print(f"{len(refs)} grounded FAQ prompts (zh + en), {sum(len(o) for _, o in refs)} reference tokens, torch threads {torch.get_num_threads()}\n")
    print("| precision | top-1 agreement with fp32 | decode tok/s, 1 sequence | aggregate tok/s, 8 sequences |")
    print("| --- | ---: | ---: | ---: |")
    for name, agree, one, eight in rows:
        print(f"| {name} | {agree:.3f} | {one:.1f} | {eight:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
