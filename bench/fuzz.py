"""Fuzz every RPC of a running kefu with random requests (tests/fuzz_messages.py) and count
how it answered: results, clean statuses by code, and failures (INTERNAL/UNKNOWN or a
stack trace in a message), with the first failing requests.

    .venv/bin/python bench/fuzz.py --cases 10000             # against `make up` (default addresses)
    .venv/bin/python bench/fuzz.py --cases 2000 --json out.json --seed 7

Knowledge.Ingest and Knowledge.Delete change the knowledge base they are sent to: by
default they are left out (--mutating puts them in: run them against a kefu whose
knowledge you can throw away). Generation cases cost a model reply each; they get a
small share (--generation-share).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import time
from pathlib import Path

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.config import load_config  # noqa: E402
from tests.fuzz_messages import call, clean, message_strategy, rpcs  # noqa: E402

MUTATING = {"/kefu.v1.Knowledge/Ingest", "/kefu.v1.Knowledge/Delete"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10000, help="requests in all (default 10000)")
    parser.add_argument("--generation-share", type=float, default=0.01, help="share of the cases for Generation (default 0.01)")
    parser.add_argument("--mutating", action="store_true", help="also Knowledge.Ingest and Knowledge.Delete")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    cfg = load_config()
    targets = {
        "kefu.v1.NLU": cfg.target("nlu"), "kefu.v1.Knowledge": cfg.target("knowledge"), "kefu.v1.Generation": cfg.target("generation"),
        "kefu.v1.Dialog": cfg.target("dialog"), "kefu.v1.AgentDesk": cfg.target("dialog"), "kefu.v1.ErpEvents": cfg.target("dialog"),
    }
    channels = {s: grpc.insecure_channel(t, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]) for s, t in targets.items()}
    chosen = [r for r in rpcs() if args.mutating or r.path not in MUTATING]
    generation = [r for r in chosen if r.service == "kefu.v1.Generation"]
    others = [r for r in chosen if r not in generation]
    budget = {r.path: max(1, round(args.cases * args.generation_share / len(generation))) for r in generation}
    rest = args.cases - sum(budget.values())
    budget.update({r.path: rest // len(others) for r in others})
    outcomes: dict[str, collections.Counter] = {}
    failures: list[dict] = []
    random.seed(args.seed)
    start = time.perf_counter()
    for rpc in chosen:
        counts: collections.Counter = collections.Counter()
        outcomes[rpc.path] = counts
        t0 = time.perf_counter()

        one = _fuzzer(rpc, channels[rpc.service], budget[rpc.path], counts, failures)
        try:
            one()
        except AssertionError as exc:  # what hypothesis found (after shrinking it); counted in `one`
            print(f"  {rpc.path}: stopped at a failure: {str(exc).splitlines()[0][:200]}", file=sys.stderr)
        print(f"{rpc.path:<40} {sum(counts.values()) - counts['FAILED']:>6} cases {time.perf_counter() - t0:6.1f} s  "
              + ", ".join(f"{k} {v}" for k, v in counts.most_common()), flush=True)
    took = time.perf_counter() - start
    total = sum(sum(c.values()) - c["FAILED"] for c in outcomes.values())
    failed = sum(c["FAILED"] for c in outcomes.values())
    print(f"\n{total} cases in {took:.0f} s; {failed} not clean")
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": total, "seconds": round(took, 1), "failed": failed,
                                               "outcomes": {k: dict(v) for k, v in outcomes.items()}, "failures": failures},
                                              ensure_ascii=False, indent=2), encoding="utf-8")
    return 1 if failed or not total else 0


def _fuzzer(rpc, channel: grpc.Channel, cases: int, counts: collections.Counter, failures: list[dict]):  # noqa: ANN001, ANN202
    timeout = 120.0 if rpc.service == "kefu.v1.Generation" or rpc.method == "Converse" else 5.0

    @settings(max_examples=cases, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=False)
    @given(st.lists(message_strategy(rpc.request), min_size=1, max_size=3))
    def one(requests: list) -> None:
        err = call(channel, rpc, requests, timeout=timeout)
        why = clean(err)
        counts["ok" if err is None else err.code().name] += 1
        if why:
            counts["FAILED"] += 1
            if len(failures) < 50:
                failures.append({"rpc": rpc.path, "request": str(requests[0])[:500], "why": why})
        assert not why, why

    return one


if __name__ == "__main__":
    sys.exit(main())
