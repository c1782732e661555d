"""How the local model answers questions whose FAQ passage it is given.

    OMP_NUM_THREADS=2 .venv/bin/python bench/grounded_replies.py [--questions first|all] [--show]

For every entry of the demo pack's FAQ (zh + en), the entry's first question (or
all of them) with the entry itself as the passage, in the prompt Generation builds
(services/generation/prompt.py), greedy, on the engine Triton serves (int8 by
default; --precision). Reports, per language:

- declined: replies that open by saying they do not know, although the passage
  answers (Dialog replaces them by the passage verbatim: services/dialog/grounding.py);
- too short: replies too short to carry the answer (replaced too);
- figure kept: among passages with a figure (days, yuan, hours...), the share of
  replies that repeat at least one of them;
- mean length of the reply in characters.

--show prints every question with its reply.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from llm_quality import greedy  # noqa: E402
from services.config import load_config  # noqa: E402
from services.demo.pack import load_domain_pack  # noqa: E402
from services.dialog.grounding import ReplyCheck  # noqa: E402
from services.generation.prompt import PromptPassage, ReplyPrompt, build_messages, render_chatml  # noqa: E402
from services.serving.llm.model import QwenModel  # noqa: E402
from services.serving.model_files import ensure_models  # noqa: E402


def figures(text: str) -> set[str]:
    return set(re.findall(r"\d+", text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", choices=["first", "all"], default="first")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--tokens", type=int, default=96, help="most tokens per reply (default 96)")
    parser.add_argument("--show", action="store_true", help="print every question and reply")
    args = parser.parse_args()
    cfg = load_config()
    model_dir = ensure_models(cfg, progress=lambda line: print(line, file=sys.stderr)).llm_dir
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model = QwenModel.load(model_dir, precision=args.precision, slots=1, max_len=2048)
    faq = load_domain_pack(cfg.domain_pack).faq
    cases = [(f, q) for f in faq for q in (f.questions if args.questions == "all" else f.questions[:1])]
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    start = time.perf_counter()
    for i, (entry, question) in enumerate(cases, 1):
        prompt = ReplyPrompt(question, entry.locale, [PromptPassage(entry.id, entry.title, entry.answer)])
        ids = tokenizer(render_chatml(build_messages(prompt)), add_special_tokens=False).input_ids
        text = tokenizer.decode(greedy(model, ids, args.tokens, eos), skip_special_tokens=True)
        check = ReplyCheck(entry.locale)
        check.feed(text)
        row = counts[entry.locale]
        row["n"] += 1
        row["chars"] += len(text)
        if not check.finish():
            row[check.reason] += 1
        if figures(entry.answer):
            row["with_figures"] += 1
            row["figure_kept"] += bool(figures(text) & figures(entry.answer))
        if args.show:
            print(f"[{entry.id}] {question}\n    -> {text!r}" + (f"  ({check.reason})" if check.reason else ""), flush=True)
        elif i % 20 == 0:
            print(f"  {i}/{len(cases)} replies ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    took = time.perf_counter() - start
    print(f"\n{len(cases)} questions ({args.questions} of each FAQ entry), {args.precision}, torch threads {torch.get_num_threads()}, {took:.0f} s\n")
    print("| language | questions | declined | too short | figure kept | mean chars |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for language in sorted(counts):
        row = counts[language]
        n = row["n"]
        print(
            f"| {language} | {n:.0f} | {row['declined']:.0f} ({row['declined'] / n:.0%}) | {row['too_short']:.0f} ({row['too_short'] / n:.0%}) "
            f"| {row['figure_kept']:.0f}/{row['with_figures']:.0f} | {row['chars'] / n:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
