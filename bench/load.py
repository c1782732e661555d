"""Load on a running kefu: N customers at once over gRPC, each holding conversations of
mixed kinds (an FAQ question, an order status on the demo store with identification, a
request for a person), for a fixed time at each level. Per level: turns, throughput,
p50/p99 turn latency, p50/p99 time to first text, error rate, and where it saturates.

    .venv/bin/python bench/load.py                                # 1, 8, 32, 64 customers, 30 s each
    .venv/bin/python bench/load.py --levels 1,8 --seconds 20 --json out.json

It talks to the Dialog address of the configuration (KEFU_* / --config), like `kefu chat`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kefu.v1 import dialog_pb2, dialog_pb2_grpc  # noqa: E402
from services.config import load_config  # noqa: E402

FAQ = ["退货运费谁出？", "How long does shipping take?", "你们支持开发票吗？", "Can I use two coupons on one order?",
       "会员积分怎么用？", "Do you ship abroad?", "七天无理由退货怎么算时间？", "How do I reset my password?"]
HANDOFF = ["我要投诉，转人工", "I want to talk to a person"]


@dataclass
class Level:
    customers: int
    latencies: list[float] = field(default_factory=list)
    first_text: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)


def _accounts(cfg) -> list[tuple[str, str]]:  # noqa: ANN001
    """(phone, order id) pairs of the demo store."""
    from services.erp import open_store

    store = open_store(cfg)
    if store is None or store.format != "demo":
        raise SystemExit("bench/load.py expects the demo store behind kefu (`kefu store reset`)")
    pairs = []
    for i in range(1, 200):
        customer = store.get_customer(f"C{i:05d}")
        if customer is None:
            break
        orders = store.list_orders(customer.customer_id)
        if orders and customer.phone:
            pairs.append((customer.phone, orders[0].order_id))
    return pairs


async def _turn(stub, level: Level, text: str, session_id: str) -> str:  # noqa: ANN001
    start = time.perf_counter()
    first = None
    result = None
    try:
        async for event in stub.Converse(dialog_pb2.TurnRequest(text=text, session_id=session_id, channel="load"), timeout=300):
            if event.HasField("chunk") and first is None:
                first = time.perf_counter() - start
            elif event.HasField("result"):
                result = event.result
    except grpc.aio.AioRpcError as err:
        level.errors[err.code().name] = level.errors.get(err.code().name, 0) + 1
        return ""
    level.latencies.append(time.perf_counter() - start)
    level.first_text.append(first if first is not None else time.perf_counter() - start)
    return result.session_id if result is not None else ""


async def _customer(stub, level: Level, accounts, until: float, rng: random.Random) -> None:  # noqa: ANN001
    while time.perf_counter() < until:
        kind = rng.choices(["faq", "order", "handoff"], weights=[6, 3, 1])[0]
        level.kinds[kind] = level.kinds.get(kind, 0) + 1
        if kind == "faq":
            await _turn(stub, level, rng.choice(FAQ), "")
        elif kind == "order":
            phone, order = rng.choice(accounts)
            session = await _turn(stub, level, f"我的订单 {order} 到哪了？", "")
            if session and time.perf_counter() < until:
                await _turn(stub, level, f"手机号 {phone}", session)
        else:
            await _turn(stub, level, rng.choice(HANDOFF), "")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(target: str, levels: list[int], seconds: float, accounts) -> list[dict]:  # noqa: ANN001
    out = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = dialog_pb2_grpc.DialogStub(channel)
        await _turn(stub, Level(1), "你好", "")  # warm up
        for n in levels:
            level = Level(n)
            until = time.perf_counter() + seconds
            start = time.perf_counter()
            await asyncio.gather(*(_customer(stub, level, accounts, until, random.Random(i)) for i in range(n)))
            took = time.perf_counter() - start
            turns = len(level.latencies)
            row = {
                "customers": n, "seconds": round(took, 1), "turns": turns, "turns_per_s": round(turns / took, 2),
                "p50_s": round(_pct(level.latencies, 0.5), 3), "p99_s": round(_pct(level.latencies, 0.99), 3),
                "ttft_p50_s": round(_pct(level.first_text, 0.5), 3), "ttft_p99_s": round(_pct(level.first_text, 0.99), 3),
                "mean_s": round(statistics.fmean(level.latencies), 3) if turns else None,
                "errors": level.errors, "error_rate": round(sum(level.errors.values()) / max(1, turns + sum(level.errors.values())), 4),
                "conversations": level.kinds,
            }
            out.append(row)
            print(f"{n:>3} customers: {turns:>5} turns, {row['turns_per_s']:>6.2f}/s, p50 {row['p50_s']:.3f} s, p99 {row['p99_s']:.3f} s, "
                  f"first text p50 {row['ttft_p50_s']:.3f} s, errors {row['error_rate']:.2%} {level.errors or ''}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,8,32,64", help="customers at once, comma-separated (default 1,8,32,64)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time at each level (default 30)")
    parser.add_argument("--config", help="kefu configuration file")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    cfg = load_config(args.config)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    rows = asyncio.run(run(cfg.target("dialog"), levels, args.seconds, _accounts(cfg)))
    if args.json:
        Path(args.json).write_text(json.dumps({"levels": rows, "answer_style": cfg.dialog.answer_style}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
