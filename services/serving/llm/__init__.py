"""kefu's LLM engine: a Qwen2/Qwen3 decoder with per-sequence KV caches,
continuous batching and int8/bf16/fp32 linear layers, served by Triton's ``llm`` model.

Pure torch + tokenizers; nothing here imports Triton, so benchmarks and tests can
run it in-process too.
"""
