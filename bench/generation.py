"""Generation benchmark: drives kefu's Generation service over gRPC (Triton's llm
model behind it) and compares with a naive fp32 transformers ``generate()`` in the
same run.

    .venv/bin/python bench/generation.py                # starts Triton + Generation itself
    .venv/bin/python bench/generation.py --json --runs 20

Reports time to first token (p50/p99) for a ~500-token prompt, decode tokens/s of
one stream, and aggregate tokens/s with 4 and 8 concurrent streams. Every request
carries its own prompt and skips the response cache. Set OMP_NUM_THREADS to pin
the thread count (default: all cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from kefu.v1 import generation_pb2, generation_pb2_grpc  # noqa: E402
from services.config import load_config  # noqa: E402
from services.demo.pack import load_domain_pack  # noqa: E402
from services.generation.prompt import PromptPassage, ReplyPrompt, build_messages, render_chatml  # noqa: E402

QUESTIONS = [
    "请根据以上资料，详细介绍一下退货、退款和换货的流程，以及需要注意的事项。",
    "Based on the reference above, explain in detail how returns, refunds and exchanges work and what to watch out for.",
    "请详细说明运费、配送时间和发票的规则。",
    "Please explain shipping fees, delivery times and invoices in detail.",
]


def long_requests(pack, n: int, target_tokens: int, tokenizer) -> list[generation_pb2.GenerateRequest]:
    """n distinct requests whose rendered prompt is about ``target_tokens`` long."""
    out = []
    for i in range(n):
        question = QUESTIONS[i % len(QUESTIONS)]
        lang = "zh" if i % 2 == 0 else "en"
        entries = [f for f in pack.faq if f.locale == lang]
        entries = entries[i % len(entries):] + entries[: i % len(entries)]  # a different set per request
        passages: list[generation_pb2.Passage] = []
        for f in entries:
            passages.append(generation_pb2.Passage(doc_id=f.id, title=f.title, text=f.answer))
            prompt = ReplyPrompt(question, lang, [PromptPassage(p.doc_id, p.title, p.text) for p in passages])
            if len(tokenizer(render_chatml(build_messages(prompt))).input_ids) >= target_tokens:
                break
        out.append(generation_pb2.GenerateRequest(user_message=question, language=lang, passages=passages, no_cache=True))
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def stream(stub, request: generation_pb2.GenerateRequest) -> dict:
    t0 = time.perf_counter()
    first = None
    final = None
    async for chunk in stub.GenerateStream(request, timeout=600):
        if chunk.HasField("final"):
            final = chunk.final
        elif first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    tokens = final.usage.completion_tokens if final else 0
    return {"ttft": (first or end) - t0, "start": t0, "end": end, "first": first or end, "tokens": tokens}


async def measure_service(target: str, requests: list, args) -> dict:
    async with grpc.aio.insecure_channel(target) as ch:
        stub = generation_pb2_grpc.GenerationStub(ch)
        # Warm-up (loads kernels, fills the channel).
        warm = generation_pb2.GenerateRequest(user_message="你好", language="zh", no_cache=True, params=generation_pb2.SamplingParams(max_tokens=4))
        await stream(stub, warm)

        print(f"  TTFT: {args.runs} requests with ~{args.prompt_tokens}-token prompts, one at a time", file=sys.stderr)
        ttfts = []
        for r in requests[: args.runs]:
            q = generation_pb2.GenerateRequest()
            q.CopyFrom(r)
            q.params.max_tokens = 1
            ttfts.append((await stream(stub, q))["ttft"])

        def decode_request(i: int) -> generation_pb2.GenerateRequest:
            q = generation_pb2.GenerateRequest(
                user_message=QUESTIONS[i % len(QUESTIONS)] + f" ({i})", language="zh" if i % 2 == 0 else "en", no_cache=True
            )
            q.params.max_tokens = args.decode_tokens
            q.params.min_tokens = args.decode_tokens  # every stream decodes the full length
            return q

        results = {}
        for concurrency in (1, 4, 8):
            print(f"  decode: {concurrency} concurrent stream(s) x {args.decode_tokens} tokens", file=sys.stderr)
            runs = await asyncio.gather(*(stream(stub, decode_request(i)) for i in range(concurrency)))
            wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
            total = sum(r["tokens"] for r in runs)
            per_stream = [(r["tokens"] - 1) / max(r["end"] - r["first"], 1e-9) for r in runs]
            results[concurrency] = {"aggregate_tok_s": total / wall, "per_stream_tok_s": statistics.mean(per_stream), "tokens": total}
    return {"ttft_p50_s": pct(ttfts, 0.5), "ttft_p99_s": pct(ttfts, 0.99), "decode": results}


def measure_naive(model_dir: str, requests: list, args, tokenizer) -> dict:
    """transformers fp32 generate(), one request at a time, streamed with TextIteratorStreamer."""
    import torch
    from transformers import AutoModelForCausalLM, TextIteratorStreamer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def run(prompt: str, max_new_tokens: int) -> dict:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
        t0 = time.perf_counter()
        out: dict = {}

        def work():
            with torch.inference_mode():
                out["seq"] = model.generate(
                    **ids, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False, streamer=streamer
                )

        th = threading.Thread(target=work)
        th.start()
        first = None
        for piece in streamer:
            if piece and first is None:
                first = time.perf_counter()
        th.join()
        end = time.perf_counter()
        tokens = out["seq"].shape[1] - ids.input_ids.shape[1]
        return {"ttft": (first or end) - t0, "tokens": tokens, "decode_s": end - (first or end)}

    def prompt_of(r: generation_pb2.GenerateRequest) -> str:
        return render_chatml(build_messages(ReplyPrompt(r.user_message, r.language, [PromptPassage(p.doc_id, p.title, p.text) for p in r.passages])))

    run("<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n", 2)
    print(f"  naive TTFT: {args.naive_runs} requests", file=sys.stderr)
    ttfts = [run(prompt_of(r), 1)["ttft"] for r in requests[: args.naive_runs]]
    print(f"  naive decode: 1 stream x {args.decode_tokens} tokens", file=sys.stderr)
    d = run(render_chatml(build_messages(ReplyPrompt(QUESTIONS[0], "zh"))), args.decode_tokens)
    return {"ttft_p50_s": pct(ttfts, 0.5), "ttft_p99_s": pct(ttfts, 0.99), "decode_tok_s": (d["tokens"] - 1) / max(d["decode_s"], 1e-9)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", help="an already running Generation service host:port (default: start Triton + Generation)")
    parser.add_argument("--runs", type=int, default=10, help="TTFT requests for kefu (default 10)")
    parser.add_argument("--naive-runs", type=int, default=3, help="TTFT requests for the naive baseline (default 3)")
    parser.add_argument("--prompt-tokens", type=int, default=500)
    parser.add_argument("--decode-tokens", type=int, default=128)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from services.serving.model_files import ensure_models

    cfg = load_config()
    paths = ensure_models(cfg, progress=lambda line: print(f"models: {line}", file=sys.stderr))
    tokenizer = AutoTokenizer.from_pretrained(str(paths.llm_dir))
    pack = load_domain_pack(cfg.domain_pack)
    requests = long_requests(pack, max(args.runs, args.naive_runs), args.prompt_tokens, tokenizer)
    lengths = [len(tokenizer(render_chatml(build_messages(ReplyPrompt(r.user_message, r.language, [PromptPassage(p.doc_id, p.title, p.text) for p in r.passages])))).input_ids) for r in requests]

    stack = triton = None
    target = args.target
    if not target:
        from services.processes import free_port
        from services.serving.triton import TritonServer
        from services.stack import KefuStack

        cfg.home = tempfile.mkdtemp(prefix="kefu-bench-")
        cfg.ports.triton_grpc, cfg.ports.triton_http, cfg.ports.triton_metrics, cfg.ports.generation = (free_port() for _ in range(4))
        cfg.models.triton_models = "llm"
        print(f"starting Triton ({cfg.models.llm_precision}) and Generation...", file=sys.stderr)
        triton = TritonServer(cfg).start()
        triton.wait_ready(timeout=300)
        stack = KefuStack(cfg, with_triton=False, progress=lambda line: None)
        stack.start_service("generation")
        stack.wait_service("generation")
        target = cfg.target("generation")
    try:
        print("kefu (Generation service over gRPC):", file=sys.stderr)
        kefu = asyncio.run(measure_service(target, requests, args))
    finally:
        if stack is not None:
            stack.stop()
        if triton is not None:
            triton.stop()
    naive = None
    if not args.skip_naive:
        print("naive fp32 generate():", file=sys.stderr)
        naive = measure_naive(str(paths.llm_dir), requests, args, tokenizer)

    report = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "threads": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count())),
        "precision": cfg.models.llm_precision,
        "prompt_tokens_mean": statistics.mean(lengths),
        "kefu": kefu,
        "naive": naive,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    single = kefu["decode"][1]["per_stream_tok_s"]
    rows = [
        ("TTFT p50 (s), ~%d-token prompt" % report["prompt_tokens_mean"], kefu["ttft_p50_s"], naive and naive["ttft_p50_s"]),
        ("TTFT p99 (s)", kefu["ttft_p99_s"], naive and naive["ttft_p99_s"]),
        ("decode tok/s, 1 stream", single, naive and naive["decode_tok_s"]),
        ("aggregate tok/s, 4 streams", kefu["decode"][4]["aggregate_tok_s"], naive and naive["decode_tok_s"]),
        ("aggregate tok/s, 8 streams", kefu["decode"][8]["aggregate_tok_s"], naive and naive["decode_tok_s"]),
    ]
    print(f"\n| metric | kefu ({report['precision']}, continuous batching) | naive fp32 generate() |")
    print("| --- | ---: | ---: |")
    for name, a, b in rows:
        print(f"| {name} | {a:.2f} | {'—' if b is None else f'{b:.2f}'} |")
    if naive:
        print(f"\nsingle-stream speed-up over naive: {single / naive['decode_tok_s']:.1f}x; "
              f"8-stream aggregate over kefu single stream: {kefu['decode'][8]['aggregate_tok_s'] / single:.1f}x")
    print("(naive serves one request at a time: its aggregate equals its single-stream rate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
