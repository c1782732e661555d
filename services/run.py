"""Start one kefu service in this process.

    python -m services.run {nlu,knowledge,generation,dialog} [--config FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import grpc

from services.config import KefuConfig, load_config
from services.nlu.pii import install_pii_log_filter
from services.server import ServiceSpec, serve
from services.server import configure as configure_security
from services.telemetry import install_trace_ids, setup_metrics, setup_tracing

SERVICES = ("nlu", "knowledge", "generation", "dialog")


async def build_nlu(cfg: KefuConfig) -> ServiceSpec:
    from kefu.v1 import nlu_pb2, nlu_pb2_grpc
    from services.demo.pack import load_domain_pack
    from services.nlu.core import MessageAnalyzer
    from services.nlu.entities import EntityExtractor
    from services.nlu.intents import FallbackIntentModel, IntentMatcher, TritonIntentModel
    from services.nlu.preprocess import Preprocessor
    from services.nlu.sentiment_pack import load_or_train_pack_model
    from services.nlu.slot_pack import load_or_train_pack_tagger
    from services.nlu.servicer import NluServicer
    from services.nlu.training import ensure_intent_model
    from services.serving.triton_client import IntentClassifierClient

    # While Triton is down or restarting, the same models run in this process (marked degraded).
    embedder = model_embedder(cfg)
    classifier = IntentClassifierClient(cfg.triton_grpc_target, model=cfg.models.intent_model)
    # Trains and publishes a version on first start (or when the pack changed), then
    # has Triton load it.
    await ensure_intent_model(cfg, embedder, classifier, pack=load_domain_pack(cfg.domain_pack))
    matcher = IntentMatcher(
        embedder, FallbackIntentModel(TritonIntentModel(classifier), Path(cfg.models.repository) / cfg.models.intent_model)
    )
    # The pack's sentiment model and open-slot tagger: trained on first start (seconds),
    # then loaded from KEFU_HOME/models, keyed by the sha256 of their pack files.
    models_dir = cfg.home_path / "models"
    sentiment = await load_or_train_pack_model(cfg.domain_pack, models_dir, embedder.embed_queries, embedder_id=embedder.model_id)
    tagger = await asyncio.to_thread(load_or_train_pack_tagger, cfg.domain_pack, models_dir)
    preprocessor = Preprocessor(cfg.nlu.sensitive_lexicon or None, cfg.nlu.lexicon_reload_s)
    analyzer = MessageAnalyzer(matcher, preprocessor=preprocessor, entities=EntityExtractor(tagger), sentiment=sentiment)
    servicer = NluServicer(analyzer, max_chars=cfg.dialog.max_message_chars)

    def register(server: grpc.aio.Server) -> list[str]:
        nlu_pb2_grpc.add_NLUServicer_to_server(servicer, server)
        return [nlu_pb2.DESCRIPTOR.services_by_name["NLU"].full_name]

    return ServiceSpec("nlu", register, [embedder.close, classifier.close])


def model_embedder(cfg: KefuConfig):  # noqa: ANN201 - services.embedding.FallbackEmbedder
    """Triton's embedder model, and while Triton is down the same weights in this process."""
    from services.embedding import FallbackEmbedder, LocalEmbedder, TritonEmbedder
    from services.serving.embedder_weights import model_id, weights_path

    mid = model_id(cfg.models.embedder_weights)
    local = LocalEmbedder(model_path=lambda: weights_path(cfg), model_id=mid)  # loaded only if Triton is away
    return FallbackEmbedder(TritonEmbedder(cfg.triton_grpc_target, model=cfg.models.embedder_model, model_id=mid), local)


async def build_knowledge(cfg: KefuConfig) -> ServiceSpec:
    from kefu.v1 import knowledge_pb2, knowledge_pb2_grpc
    from services.demo.pack import load_domain_pack
    from services.knowledge.answerability import AnswerabilityModel, coefficients_path
    from services.knowledge.core import KnowledgeBase, entries_from_pack
    from services.knowledge.servicer import KnowledgeServicer

    k = cfg.knowledge
    embedder = model_embedder(cfg)
    answerability = AnswerabilityModel(threshold=k.answerable_threshold, path=coefficients_path(embedder.model_id))
    if k.backend == "elasticsearch":
        from services.knowledge.elasticsearch import ElasticsearchIndex

        index = ElasticsearchIndex(
            k.elasticsearch_url, embedder, index_prefix=k.elasticsearch_index_prefix,
            api_key=k.elasticsearch_api_key or None, answerability=answerability, default_mode=k.mode,
            sync_interval_s=k.watch_s or None, request_timeout_s=k.elasticsearch_timeout_s,
            ca_certs=k.elasticsearch_ca_certs or None, zh_analyzer=k.elasticsearch_zh_analyzer,
            hybrid_fusion=k.elasticsearch_hybrid_fusion,
        )
    elif k.backend == "embedded":
        from services.knowledge.index import EmbeddedIndex, FusionParams

        fusion = FusionParams(k.rrf_rank_constant, k.rrf_window, k.rrf_bm25_weight, k.rrf_dense_weight)
        index = EmbeddedIndex(
            cfg.home_path / "knowledge.db", embedder, answerability=answerability, fusion=fusion, default_mode=k.mode, watch_s=k.watch_s
        )
    else:
        raise ValueError(f"knowledge.backend must be embedded or elasticsearch, not {k.backend!r}")
    kb = KnowledgeBase(index, default_top_k=k.top_k)
    await kb.open(seed=entries_from_pack(load_domain_pack(cfg.domain_pack)))
    servicer = KnowledgeServicer(kb)

    def register(server: grpc.aio.Server) -> list[str]:
        knowledge_pb2_grpc.add_KnowledgeServicer_to_server(servicer, server)
        return [knowledge_pb2.DESCRIPTOR.services_by_name["Knowledge"].full_name]

    return ServiceSpec("knowledge", register, [kb.close, embedder.close])


async def build_generation(cfg: KefuConfig) -> ServiceSpec:
    from kefu.v1 import generation_pb2, generation_pb2_grpc
    from services.generation.backends import make_llm_backend
    from services.generation.breaker import CircuitBreaker, GuardedLlm
    from services.generation.cache import ResponseCache
    from services.generation.core import ReplyWriter
    from services.generation.metrics import GenerationMetrics
    from services.generation.servicer import GenerationServicer

    backend = make_llm_backend(cfg)
    breaker = CircuitBreaker(failures=cfg.generation.breaker_failures, reset_s=cfg.generation.breaker_reset_s)
    llm = GuardedLlm(backend, breaker)
    cache = ResponseCache(cfg.generation.cache_entries, cfg.generation.cache_ttl_s)
    metrics = GenerationMetrics(
        setup_metrics(cfg.telemetry, "kefu-generation"), hit_ratio=lambda: cache.hit_ratio, breaker_open=lambda: breaker.state == "open"
    )
    servicer = GenerationServicer(ReplyWriter(llm, default_max_tokens=cfg.models.max_tokens, cache=cache, metrics=metrics))

    def register(server: grpc.aio.Server) -> list[str]:
        generation_pb2_grpc.add_GenerationServicer_to_server(servicer, server)
        return [generation_pb2.DESCRIPTOR.services_by_name["Generation"].full_name]

    return ServiceSpec("generation", register, [llm.close])


async def build_dialog(cfg: KefuConfig) -> ServiceSpec:
    from kefu.v1 import dialog_pb2, dialog_pb2_grpc
    from services.demo.pack import load_domain_pack
    from services.dialog.core import DialogEngine, TaskDesk
    from services.dialog.flows.spec import flows_for
    from services.dialog.operations import OperationDesk
    from kefu.v1 import erp_pb2, erp_pb2_grpc
    from services.erp import open_store
    from services.erp.events import ReturnDesk
    from services.erp.events_servicer import ErpEventsServicer
    from services.dialog.metrics import DialogMetrics
    from services.dialog.servicer import DialogServicer
    from services.dialog.sessions import open_sessions
    from services.dialog.ticket_outbox import open_outbox
    from services.dialog.tickets import TicketDesk
    from services.dialog.upstream import Upstream

    upstream = Upstream(
        nlu=cfg.target("nlu"), knowledge=cfg.target("knowledge"), generation=cfg.target("generation"),
        call_timeout_s=cfg.dialog.call_timeout_s, generate_timeout_s=cfg.models.generate_timeout_s,
    )
    returns = ReturnDesk(cfg)
    tasks = TaskDesk(open_store=lambda: open_store(cfg), flows_for=flows_for, operations=OperationDesk(cfg), returns=returns)
    # A request for a person while Temporal is away is queued, not lost, and opened when it is back.
    tickets = TicketDesk(cfg, outbox=open_outbox(cfg))
    opening = asyncio.get_running_loop().create_task(tickets.keep_opening_queued())
    engine = DialogEngine(cfg, load_domain_pack(cfg.domain_pack), open_sessions(cfg), upstream, tickets, tasks)
    servicer = DialogServicer(
        engine, customer_turns_per_min=cfg.security.customer_turns_per_min, session_turns_per_min=cfg.security.session_turns_per_min,
        metrics=DialogMetrics(setup_metrics(cfg.telemetry, "kefu-dialog")),
    )
    from kefu.v1 import agent_pb2, agent_pb2_grpc
    from services.agent.desk import AgentDesk, TicketSignals
    from services.agent.servicer import AgentDeskServicer
    from services.demo.store import open_demo_store

    # Human agents' side of a handoff, next to the conversations it takes over.
    agents = AgentDeskServicer(AgentDesk(open_sessions(cfg), open_demo_store(cfg), TicketSignals(cfg)))

    def register(server: grpc.aio.Server) -> list[str]:
        dialog_pb2_grpc.add_DialogServicer_to_server(servicer, server)
        agent_pb2_grpc.add_AgentDeskServicer_to_server(agents, server)
        # ERP events in (returns, exchanges, refunds) are served by the Dialog process,
        # which holds the workflow engine's client.
        erp_pb2_grpc.add_ErpEventsServicer_to_server(ErpEventsServicer(returns), server)
        return [dialog_pb2.DESCRIPTOR.services_by_name["Dialog"].full_name, erp_pb2.DESCRIPTOR.services_by_name["ErpEvents"].full_name,
                agent_pb2.DESCRIPTOR.services_by_name["AgentDesk"].full_name]

    async def stop_opening() -> None:
        opening.cancel()

    return ServiceSpec("dialog", register, [stop_opening, upstream.close])


BUILDERS = {"nlu": build_nlu, "knowledge": build_knowledge, "generation": build_generation, "dialog": build_dialog}


async def run_service(name: str, cfg: KefuConfig) -> None:
    setup_tracing(cfg.telemetry, f"kefu-{name}")
    setup_metrics(cfg.telemetry, f"kefu-{name}")  # the services' own metrics add to it; /metrics when configured
    configure_security(cfg.security, cfg.home_path)  # TLS, keys and limits for this server and its channels
    spec = await BUILDERS[name](cfg)
    await serve(spec, cfg.bind_address(name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.run", description="Run one kefu gRPC service.")
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("--config", help="YAML configuration file (default: $KEFU_CONFIG, then built-in defaults)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.service} %(name)s %(levelname)s %(message)s trace=%(trace_id)s")
    install_trace_ids()  # every log line names the trace it belongs to (- outside one)
    install_pii_log_filter()  # no phone number, email, ID or card number reaches the logs
    cfg = load_config(args.config)
    cfg.home_path.mkdir(parents=True, exist_ok=True)
    asyncio.run(run_service(args.service, cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
