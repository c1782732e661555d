"""Which language model backend Generation uses, chosen by configuration."""

from __future__ import annotations

from services.config import KefuConfig
from services.generation.core import LlmBackend, TritonLlm

BACKENDS = ("triton", "openai", "ollama")


def make_llm_backend(cfg: KefuConfig) -> LlmBackend:
    """``cfg.models.backend``: ``triton`` (the ``llm`` model of kefu's Triton, the
    default), ``openai`` (an OpenAI-compatible server at ``openai_base_url``: vLLM,
    SGLang, llama-server, Ollama's ``/v1``) or ``ollama`` (Ollama's native
    ``/api/chat`` at ``openai_base_url``)."""
    models = cfg.models
    backend = (models.backend or "triton").strip().lower()
    if backend == "triton":
        return TritonLlm(
            cfg.triton_grpc_target, model=models.llm_model, timeout_s=models.generate_timeout_s,
            first_token_timeout_s=models.first_token_timeout_s, template=models.chat_template,
        )
    if backend in ("openai", "ollama"):
        missing = [name for name in ("openai_base_url", "openai_model") if not getattr(models, name)]
        if missing:
            fields = " and ".join(f"models.{name} (KEFU_MODELS_{name.upper()})" for name in missing)
            raise ValueError(f"models.backend={backend!r} needs {fields}")
        from services.generation.openai_backend import OpenAICompatibleLlm

        return OpenAICompatibleLlm(
            models.openai_base_url, model=models.openai_model, api_key=models.openai_api_key, timeout_s=models.generate_timeout_s,
            first_token_timeout_s=models.first_token_timeout_s, thinking=False, protocol=backend,
        )
    raise ValueError(f"unknown models.backend {models.backend!r}: expected one of {', '.join(BACKENDS)}")
