"""The Qwen2 / Qwen3 decoder, written out so that many sequences share one step.

Each sequence owns a *slot* in a preallocated KV cache. ``prefill`` runs a
sequence's prompt (in chunks) and fills its slot; ``decode`` advances a batch of
slots by one token each, running every linear layer once for the whole batch —
that is what makes several concurrent customers cost little more than one on a
memory-bound CPU or GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from safetensors import safe_open

from services.serving.llm.linear import Linear


@dataclass(frozen=True)
class QwenShape:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    qk_norm: bool  # Qwen3 normalises q and k per head
    tie_word_embeddings: bool

    @classmethod
    def from_config(cls, config: dict) -> "QwenShape":
        rope = config.get("rope_parameters") or {}
        theta = rope.get("rope_theta") or config.get("rope_theta") or 10000.0
        heads = int(config["num_attention_heads"])
        return cls(
            vocab_size=int(config["vocab_size"]),
            hidden_size=int(config["hidden_size"]),
            intermediate_size=int(config["intermediate_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or int(config["hidden_size"]) // heads),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
            qk_norm=config.get("model_type") == "qwen3",
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )


def layer_precisions(precision: str) -> dict[str, str]:
    """Precision of each kind of linear layer for a model precision.

    (A bf16 ``down_proj`` would be more accurate but oneDNN's bf16 kernels round
    differently for different batch sizes, so batching would change outputs.)
    """
    return dict.fromkeys(("qkv", "o", "gate_up", "down", "lm_head"), precision)


class _Layer:
    def __init__(self, w: dict[str, torch.Tensor], p: str, shape: QwenShape, precision: str, device: torch.device) -> None:
        kinds = layer_precisions(precision)
        a = f"{p}.self_attn"
        qkv_w = torch.cat([w[f"{a}.q_proj.weight"], w[f"{a}.k_proj.weight"], w[f"{a}.v_proj.weight"]])
        qkv_b = None
        if f"{a}.q_proj.bias" in w:
            qkv_b = torch.cat([w[f"{a}.q_proj.bias"], w[f"{a}.k_proj.bias"], w[f"{a}.v_proj.bias"]])
        self.qkv = Linear(qkv_w, qkv_b, kinds["qkv"], device)
        self.o = Linear(w[f"{a}.o_proj.weight"], None, kinds["o"], device)
        m = f"{p}.mlp"
        self.gate_up = Linear(torch.cat([w[f"{m}.gate_proj.weight"], w[f"{m}.up_proj.weight"]]), None, kinds["gate_up"], device)
        self.down = Linear(w[f"{m}.down_proj.weight"], None, kinds["down"], device)
        self.input_norm = w[f"{p}.input_layernorm.weight"].float().to(device)
        self.post_norm = w[f"{p}.post_attention_layernorm.weight"].float().to(device)
        self.q_norm = w[f"{a}.q_norm.weight"].float().to(device) if shape.qk_norm else None
        self.k_norm = w[f"{a}.k_norm.weight"].float().to(device) if shape.qk_norm else None


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class QwenModel:
    """Weights plus a KV cache of ``slots`` sequences of up to ``max_len`` tokens."""

    def __init__(
        self, shape: QwenShape, weights: dict[str, torch.Tensor], *, precision: str = "int8", slots: int = 8,
        max_len: int = 4096, device: str = "cpu",
    ) -> None:
        self.shape = shape
        self.precision = precision
        self.device = torch.device(device)
        self.slots = slots
        self.max_len = max_len
        dev = self.device
        self.embed = weights["model.embed_tokens.weight"].float().to(dev)
        head = weights.get("lm_head.weight")
        self.lm_head = Linear(self.embed if head is None else head, None, layer_precisions(precision)["lm_head"], dev)
        self.norm = weights["model.norm.weight"].float().to(dev)
        self.layers = [_Layer(weights, f"model.layers.{i}", shape, precision, dev) for i in range(shape.num_layers)]
        kv = (shape.num_layers, slots, shape.num_kv_heads, max_len, shape.head_dim)
        cache_dtype = torch.float32 if dev.type == "cpu" else torch.bfloat16
        self.k_cache = torch.zeros(kv, dtype=cache_dtype, device=dev)
        self.v_cache = torch.zeros(kv, dtype=cache_dtype, device=dev)
        inv = 1.0 / (shape.rope_theta ** (torch.arange(0, shape.head_dim, 2, dtype=torch.float64) / shape.head_dim))
        freqs = torch.outer(torch.arange(max_len, dtype=torch.float64), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = emb.cos().float().to(dev)
        self.sin = emb.sin().float().to(dev)
    # -- loading ---------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: str | Path, **kwargs) -> "QwenModel":
        model_dir = Path(model_dir)
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        weights: dict[str, torch.Tensor] = {}
        for path in sorted(model_dir.glob("*.safetensors")):
            with safe_open(str(path), framework="pt") as fh:
                for key in fh.keys():
                    weights[key] = fh.get_tensor(key)
        return cls(QwenShape.from_config(config), weights, **kwargs)

    @classmethod
    def random(cls, config: dict, *, seed: int = 0, **kwargs) -> "QwenModel":
        """A randomly initialised model of the given shape (throughput runs, tests)."""
        shape = QwenShape.from_config(config)
        g = torch.Generator().manual_seed(seed)
        h, i, d = shape.hidden_size, shape.intermediate_size, shape.head_dim
        q, kv = shape.num_heads * d, shape.num_kv_heads * d

        def rnd(*dims: int) -> torch.Tensor:
            return torch.randn(*dims, generator=g) * 0.02

        w: dict[str, torch.Tensor] = {"model.embed_tokens.weight": rnd(shape.vocab_size, h), "model.norm.weight": torch.ones(h)}
        if not shape.tie_word_embeddings:
            w["lm_head.weight"] = rnd(shape.vocab_size, h)
        for n in range(shape.num_layers):
            p = f"model.layers.{n}"
            w.update({
                f"{p}.self_attn.q_proj.weight": rnd(q, h), f"{p}.self_attn.k_proj.weight": rnd(kv, h),
                f"{p}.self_attn.v_proj.weight": rnd(kv, h), f"{p}.self_attn.o_proj.weight": rnd(h, q),
                f"{p}.mlp.gate_proj.weight": rnd(i, h), f"{p}.mlp.up_proj.weight": rnd(i, h), f"{p}.mlp.down_proj.weight": rnd(h, i),
                f"{p}.input_layernorm.weight": torch.ones(h), f"{p}.post_attention_layernorm.weight": torch.ones(h),
            })
            if shape.qk_norm:
                w[f"{p}.self_attn.q_norm.weight"] = torch.ones(d)
                w[f"{p}.self_attn.k_norm.weight"] = torch.ones(d)
        return cls(shape, w, **kwargs)

    def weight_bytes(self) -> int:
        """Bytes of linear-layer weights read per decode step (embedding lookups excluded)."""
        total = self.lm_head.nbytes()
        for layer in self.layers:
            total += layer.qkv.nbytes() + layer.o.nbytes() + layer.gate_up.nbytes() + layer.down.nbytes()
        return total

    # -- attention pieces ----------------------------------------------------------------
    def _qkv(self, layer: _Layer, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [N, hidden] at ``positions`` [N] → q [N, H, D], k and v [N, KV, D], RoPE applied."""
        s = self.shape
        qkv = layer.qkv(x)
        q, k, v = qkv.split([s.num_heads * s.head_dim, s.num_kv_heads * s.head_dim, s.num_kv_heads * s.head_dim], dim=-1)
        q = q.view(-1, s.num_heads, s.head_dim)
        k = k.view(-1, s.num_kv_heads, s.head_dim)
        v = v.view(-1, s.num_kv_heads, s.head_dim)
        if layer.q_norm is not None:
            q = _rms_norm(q, layer.q_norm, s.rms_norm_eps)
            k = _rms_norm(k, layer.k_norm, s.rms_norm_eps)
        cos = self.cos[positions].unsqueeze(1)
        sin = self.sin[positions].unsqueeze(1)
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v

    def _mlp_block(self, layer: _Layer, h: torch.Tensor) -> torch.Tensor:
        x = _rms_norm(h, layer.post_norm, self.shape.rms_norm_eps)
        gate, up = layer.gate_up(x).chunk(2, dim=-1)
        return h + layer.down(F.silu(gate) * up)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.lm_head(_rms_norm(h, self.norm, self.shape.rms_norm_eps))

    # -- public steps ------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, slot: int, tokens: Sequence[int], start: int = 0) -> torch.Tensor:
        """Run ``tokens`` at positions ``start..`` for ``slot``; logits [vocab] of the last one."""
        s = self.shape
        n = len(tokens)
        if start + n > self.max_len:
            raise ValueError(f"sequence of {start + n} tokens exceeds the cache length {self.max_len}")
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
        positions = torch.arange(start, start + n, device=self.device)
        h = self.embed[ids]
        end = start + n
        # Chunk tokens attend to the cached prefix and causally to each other.
        mask = torch.ones(n, end, dtype=torch.bool, device=self.device).tril(diagonal=start)
        for li, layer in enumerate(self.layers):
            x = _rms_norm(h, layer.input_norm, s.rms_norm_eps)
            q, k, v = self._qkv(layer, x, positions)
            self.k_cache[li, slot, :, start:end] = k.transpose(0, 1).to(self.k_cache.dtype)
            self.v_cache[li, slot, :, start:end] = v.transpose(0, 1).to(self.v_cache.dtype)
            keys = self.k_cache[li, slot, :, :end].to(q.dtype)
            values = self.v_cache[li, slot, :, :end].to(q.dtype)
            attn = F.scaled_dot_product_attention(
                q.transpose(0, 1), keys, values, attn_mask=mask, enable_gqa=True
            )  # [H, n, D]
            h = h + layer.o(attn.transpose(0, 1).reshape(n, -1))
            h = self._mlp_block(layer, h)
        return self._logits(h[-1:])[0]

    @torch.inference_mode()
    def decode(self, slots: Sequence[int], tokens: Sequence[int], positions: Sequence[int]) -> torch.Tensor:
        """One token for each of ``slots`` (token i at position i); logits [B, vocab].

        ``slots`` must be 0..B-1 (the batcher keeps active sequences packed at the front).
        """
        s = self.shape
        b = len(slots)
        if list(slots) != list(range(b)):
            raise ValueError("decode expects slots 0..B-1")
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
        pos = torch.tensor(positions, dtype=torch.long, device=self.device)
        rows = torch.arange(b, device=self.device)
        lengths = [p + 1 for p in positions]
        h = self.embed[ids]
        for li, layer in enumerate(self.layers):
            x = _rms_norm(h, layer.input_norm, s.rms_norm_eps)
            q, k, v = self._qkv(layer, x, pos)
            self.k_cache[li, rows, :, pos] = k.to(self.k_cache.dtype)
            self.v_cache[li, rows, :, pos] = v.to(self.v_cache.dtype)
            # Attention row by row over exactly that row's cache: the same call a
            # sequence decoding alone makes, so batching never changes its numbers
            # (a padded, masked batch call does, in the last bits).
            attn = torch.empty(b, s.num_heads * s.head_dim, device=self.device)
            for r in range(b):
                attn[r] = self._attend_one(q[r], li, r, lengths[r])
            h = h + layer.o(attn)
            h = self._mlp_block(layer, h)
        return self._logits(h)

    def _attend_one(self, q: torch.Tensor, layer: int, slot: int, length: int) -> torch.Tensor:
        """Attention of one query token q [H, D] over ``length`` cached positions; [H*D].

        Written as two small matmuls: for a single query this is several times faster
        than scaled_dot_product_attention's per-call overhead on CPU.
        """
        s = self.shape
        group = s.num_heads // s.num_kv_heads
        keys = self.k_cache[layer, slot, :, :length].to(q.dtype)  # [KV, n, D]
        values = self.v_cache[layer, slot, :, :length].to(q.dtype)
        scores = torch.bmm(q.view(s.num_kv_heads, group, s.head_dim), keys.transpose(1, 2)) * (s.head_dim ** -0.5)
        return torch.bmm(torch.softmax(scores, dim=-1), values).reshape(-1)

    @torch.inference_mode()
    def move_slot(self, src: int, dst: int, length: int) -> None:
        """Copy a sequence's cache to another slot (keeps active slots packed)."""
        self.k_cache[:, dst, :, :length] = self.k_cache[:, src, :, :length]
        self.v_cache[:, dst, :, :length] = self.v_cache[:, src, :, :length]
