"""FLOP accounting shared by the model benchmarks (issue #12's convention), and the MFU peak.

Model FLOPs per trained token = 6 x (matmul weights the token passes through) + attention:
- matmul weights: every linear the token runs (attention, dense FFNs, routers, the output
  head) and, per MoE layer, only its top-k experts (the *active* parameters); not the
  embedding tables (lookups), norms, biases or the speaker projections (once per clip);
- attention: QK^T and PV cost 2 x 2 x T x head_dim per query and head in the forward, half
  of it under the causal mask, times 3 for forward + backward: 6 x layers x heads x
  head_dim x T per token. Packed documents are counted like one causal sequence of T rows
  (the issue's accounting, so MFU stays comparable between the two).
MFU divides by the H100/H200 SXM dense bf16 peak; the benches also print the dense-matmul
rate measured on the machine.
"""

from __future__ import annotations

import torch
from torch import nn

from accord.model.config import ModelConfig

PEAK_BF16_FLOPS = 989e12  # H100 / H200 SXM dense bf16 tensor-core peak (spec)


def matmul_params_per_token(cfg: ModelConfig) -> int:
    """Weights one token multiplies through in a forward (top-k experts only), from the model."""
    from accord.model.ffn import ChunkedLinear
    from accord.model.moe import GroupedExperts
    from accord.model.zonos import ZonosModel

    with torch.device("meta"):
        model = ZonosModel(cfg)
    total = 0
    for name, m in model.named_modules():
        if name.startswith("speaker_"):
            continue
        if isinstance(m, (nn.Linear, ChunkedLinear)):
            total += m.weight.numel()
        elif isinstance(m, GroupedExperts):
            layer = int(name.split(".")[1])  # layers.<i>.feed_forward.experts
            per_expert = (m.w13.numel() + m.w2.numel()) // m.n_experts
            total += cfg.topk_for_layer(layer) * per_expert
    return total


def attention_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Forward + backward attention FLOPs per token at ``seq_len`` rows, causal half."""
    return 6.0 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len


def train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Model FLOPs of one trained token (forward + backward), issue #12's accounting."""
    return 6.0 * matmul_params_per_token(cfg) + attention_flops_per_token(cfg, seq_len)


def mfu(cfg: ModelConfig, seq_len: int, tokens_per_s: float, peak: float = PEAK_BF16_FLOPS) -> float:
    """Model FLOPs utilisation (fraction of ``peak``) at a training throughput."""
    return train_flops_per_token(cfg, seq_len) * tokens_per_s / peak


def swiglu_ffn_flops(rows: int, dim: int, hidden: int) -> float:
    """Forward + backward FLOPs of a SwiGLU FFN over ``rows``: 3 x 2 x rows x 3 x dim x hidden."""
    return 3.0 * 2.0 * rows * 3.0 * dim * hidden
