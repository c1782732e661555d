"""Linear layers in the precisions the engine offers.

- ``fp32``: plain ``x @ W.T`` (the reference).
- ``bf16``: weights in bfloat16, activations cast for the matmul only (oneDNN uses
  AVX512-BF16 where the CPU has it); half the bytes per token of fp32.
- ``int8``: weights quantized per output channel, activations per row (token) on
  the fly, integer products through fbgemm's dynamic int8 linear (VNNI on x86): a
  quarter of the bytes of fp32 and integer dot products for prefill.

fbgemm picks one activation scale for the whole call from its min and max. To get
per-row scales instead, each row is divided by its own largest magnitude (so all
lie in [-1, 1]) and an anchor row holding -1 and +1 is appended: the call's range
is then always exactly [-1, 1], whatever else is in the batch. Integer accumulation
is exact, so a token's result does not depend on which other sequences share its
batch: continuous batching changes no output.
"""

from __future__ import annotations

import warnings

import torch

PRECISIONS = ("fp32", "bf16", "int8")


class Linear:
    """y = x @ W.T + b for x of shape [..., in_features] (fp32 in, fp32 out)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, precision: str, device: torch.device) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.out_features, self.in_features = weight.shape
        weight = weight.float()
        self.bias = bias.float().to(device) if bias is not None else None
        if precision == "int8":
            if device.type != "cpu":
                raise ValueError("int8 linear layers run on the CPU only; use bf16 on GPUs")
            scales = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
            with warnings.catch_warnings():
                # Quantized tensors are deprecated in favour of torchao; torch is pinned
                # (2.13.0) and fbgemm's int8 kernels are what this CPU path is built on.
                warnings.simplefilter("ignore", UserWarning)
                qweight = torch.quantize_per_channel(
                    weight, scales.double(), torch.zeros(self.out_features, dtype=torch.long), axis=0, dtype=torch.qint8
                )
            self._packed = torch.ops.quantized.linear_prepack(qweight, None)
            self._anchor = torch.zeros(1, self.in_features)
            self._anchor[0, 0], self._anchor[0, 1] = -1.0, 1.0
            self.weight = None
        elif precision == "bf16":
            self.weight = weight.to(device=device, dtype=torch.bfloat16)
        else:
            self.weight = weight.to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        if self.precision == "int8":
            row_scale = x2.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
            unit = torch.cat([x2 / row_scale, self._anchor])
            y = torch.ops.quantized.linear_dynamic(unit, self._packed, False)[: x2.shape[0]] * row_scale
            if self.bias is not None:
                y = y + self.bias
        elif self.precision == "bf16":
            y = (x2.to(torch.bfloat16) @ self.weight.t()).float()
            if self.bias is not None:
                y = y + self.bias
        else:
            y = torch.nn.functional.linear(x2, self.weight, self.bias)
        return y.reshape(*shape[:-1], self.out_features)

    def nbytes(self) -> int:
        per = {"fp32": 4, "bf16": 2, "int8": 1}[self.precision]
        return self.out_features * self.in_features * per
