"""The ``kefu`` command line.

    kefu up                  start the whole system locally (what `make up` runs)
    kefu chat [-m TEXT]      talk to kefu (interactive, or one message)
    kefu models list|fetch|verify
    kefu trtllm render|build-command   the TensorRT-LLM repository for GPUs
    kefu ingest PATH...      add FAQs and documents to the knowledge base
    kefu eval retrieval      recall@k / MRR / latency of knowledge retrieval
    kefu store import|export|reset|show   the store behind kefu (τ-bench retail data, or the demo store)
    kefu erp event KIND --order ID | return ID   ERP events in (parcel, inspection, refund...), a return's state
    kefu keys new --role R --name N   an API key for security.api_keys (channel, agent, admin, service)
    kefu agent queue|claim|watch|reply|handback|resolve   the human agent's desk for handed-over conversations
    kefu serve SERVICE       run one gRPC service in the foreground
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from services.config import load_config


def _cmd_up(args: argparse.Namespace) -> int:
    from services.demo.store import DemoStore
    from services.processes import ProcessFailed
    from services.serving.model_files import ModelFileError, ensure_models
    from services.stack import KefuStack

    cfg = load_config(args.config)
    cfg.home_path.mkdir(parents=True, exist_ok=True)
    print(f"kefu: state in {cfg.home_path}, model cache in {cfg.models.cache_path}", flush=True)
    try:
        ensure_models(cfg, progress=lambda line: print(f"models: {line}", flush=True))
    except ModelFileError as exc:
        print(f"kefu: model files are not usable: {exc}", file=sys.stderr)
        return 1
    DemoStore.seed(cfg.store_path)
    from services.erp import ensure_demo_store, open_store, store_location

    if ensure_demo_store(cfg):
        print(f"store: demo store built in {store_location(cfg)} (from the demo ERP at {cfg.store_path})", flush=True)
    else:
        active = open_store(cfg)
        print(f"store: {active.format if active else 'unknown'} store in {store_location(cfg)} (`kefu store reset` for the demo store)", flush=True)

    phoenix = None
    if args.traces:
        from services.trace_ui import start_phoenix

        try:
            phoenix = start_phoenix(cfg, progress=lambda line: print(line, flush=True))
        except ProcessFailed as exc:
            print(f"kefu: the trace backend did not start: {exc}", file=sys.stderr)
            return 1
        if not cfg.telemetry.triton_traces_url:
            from services.trace_relay import TraceRelay

            # Triton's own spans (OTLP/JSON) into Phoenix (protobuf only), in this process.
            relay = TraceRelay(cfg.telemetry.otlp_endpoint, host=cfg.host).start()
            cfg.telemetry.triton_traces_url = relay.url
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    stack = KefuStack(cfg, progress=lambda line: print(line, flush=True))
    try:
        took = stack.start()
        print(f"\nkefu is up in {took:.1f} s. Endpoints:", flush=True)
        for name, address in stack.endpoints():
            print(f"  {name:<14} {address}")
        print(f"logs: {stack.logs}\nchat: .venv/bin/kefu chat    (Ctrl-C here stops everything)", flush=True)
        while not stopping.wait(2.0):
            # A crashed child (Triton, a service, the worker, Temporal) is restarted with
            # backoff; one that keeps crashing stops everything (ProcessFailed below).
            for line in stack.supervise():
                print(line, file=sys.stderr, flush=True)
        return 0
    except ProcessFailed as exc:
        print(f"kefu: failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("kefu: stopping...", flush=True)
        stack.stop()
        if phoenix is not None:
            phoenix.stop(timeout=10)
        print("kefu: stopped", flush=True)


def _cmd_chat(args: argparse.Namespace) -> int:
    from services.chat import run_chat

    cfg = load_config(args.config)
    return run_chat(
        args.target or cfg.target("dialog"), message=args.message, session_id=args.session or "", as_json=args.json,
        security=cfg.security, customer_id=args.customer or "",
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    from services import run

    argv = [args.service] + (["--config", args.config] if args.config else [])
    return run.main(argv)


def add_dialog_evals(eval_sub) -> None:
    """``kefu eval conversations`` and ``kefu eval answers``: each module has its own
    ``add_arguments`` and ``run``, its docstring is the description."""
    from services.dialog import answer_eval, conversations

    for name, module, help_text in (
        ("conversations", conversations, "task completion with a scripted customer (τ-bench retail tasks) against the running kefu"),
        ("answers", answer_eval, "would customers accept kefu's knowledge answers? (facts kept, no framing, honest abstentions)"),
    ):
        parser = eval_sub.add_parser(
            name, help=help_text, description=(module.__doc__ or "").strip(), formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(parser)
        parser.set_defaults(func=module.run)


def build_parser() -> argparse.ArgumentParser:
    from services.agent.cli import add_agent_commands
    from services.erp.events_cli import add_erp_commands
    from services.security import add_keys_commands
    from services.erp.store_cli import add_store_commands
    from services.knowledge.cli import add_knowledge_commands
    from services.nlu.cli import add_nlu_commands
    from services.serving.model_files import add_models_commands
    from services.serving.trtllm import add_trtllm_commands

    parser = argparse.ArgumentParser(prog="kefu", description="kefu (客服): LLM-driven customer service for Chinese and English.")
    parser.add_argument("--config", help="YAML configuration file (default: $KEFU_CONFIG; KEFU_* variables override it)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="set up model files and demo data, start the whole system, Ctrl-C stops it")
    up.add_argument("--traces", action="store_true", help="also start Phoenix (a local trace UI, installed once into .venv-phoenix) and send traces to it")
    up.set_defaults(func=_cmd_up)

    chat = sub.add_parser("chat", help="talk to kefu: interactive, or one message with -m")
    chat.add_argument("-m", "--message", help="send one message, print the reply and exit")
    chat.add_argument("--session", help="continue this session id")
    chat.add_argument("--json", action="store_true", help="with -m: print the final turn result as JSON")
    chat.add_argument("--target", help="Dialog address host:port (default from the configuration)")
    chat.add_argument("--customer", help="the customer this chat is for (sent as kefu-customer-id; with security on, a channel key sees only that customer's sessions)")
    chat.set_defaults(func=_cmd_chat)

    serve = sub.add_parser("serve", help="run one gRPC service in the foreground")
    serve.add_argument("service", choices=("nlu", "knowledge", "generation", "dialog"))
    serve.set_defaults(func=_cmd_serve)

    evaluate = sub.add_parser("eval", help="measure kefu on your data: retrieval, intents, slots, sentiment")
    eval_sub = evaluate.add_subparsers(dest="what", required=True)
    add_knowledge_commands(sub, eval_sub)
    add_nlu_commands(eval_sub)
    add_dialog_evals(eval_sub)
    add_models_commands(sub)
    add_trtllm_commands(sub)
    add_store_commands(sub)
    add_agent_commands(sub)
    add_erp_commands(sub)
    add_keys_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `kefu chat -m ... --json | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
