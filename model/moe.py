"""Dropless mixture-of-experts FFN: tokens sorted by expert, one grouped GEMM per projection.

Every routed token slot is computed (no capacity factor, nothing dropped), so a token's
output never depends on which other tokens share the batch: KV-cache decoding and packed
training give the same numbers as a lone forward.

Expert weights use ZONOS2's SonicMoE layout: ``w13`` [E, 2I, D] with the gate projection on
even rows and the up projection on odd rows, ``w2`` [E, D, I].

Kernels (``GroupedExperts.impl``; "auto" picks per call, see ``GroupedExperts._impl``):
- ``grouped_mm``: ``torch._grouped_mm`` over the expert-sorted rows with group offsets, no
  padding; empty experts cost nothing. Auto on CUDA sm90+, and on the CPU (torch 2.11 runs
  it there; probed once per device/dtype, forward and backward) for training and for large
  or skewed batches. It needs every row stride to be a multiple of 16 bytes (``dim`` and
  ``hidden`` multiples of 4 in fp32, 8 in bf16), else auto falls back to ``padded``.
- ``padded``: one ``torch.bmm`` per projection over an [E, max_count, D] zero-padded layout
  (no Python loop per expert). Touches every expert's weights and pays for the padding.
- ``loop``: per-expert Python loop; the reference for tests and the benchmark peer only.

CPU measurements behind the auto choice (2-core Zen4, 2 threads, shared machine; padded
time / grouped_mm time, median of 9-41 alternating reps; shapes of the ``debug`` (D=64
I=128 E=4), ``small`` (D=512 I=1024 E=8) flavours and bench/bench_moe.py (D=512 I=1024 E=16),
top-1 and top-2):
- forward+backward, fp32, N=64..4096 tokens, mildly unbalanced routing: grouped_mm 1.1-2.2x
  faster for small and bench (most at N <= 1024; 1.1-1.2x at N=4096), 1.0-1.4x for debug
  (ties within noise: 0.98x at N=256 top-1, 0.97x at N=4096 top-2); 3-15x with skewed routing
  (one expert taking most tokens), where padding multiplies the work. bf16 forward+backward
  (bench shape, N=1024): 1.7-2.2x.
- inference (no grad): grouped_mm wins 2-7x when many experts are empty (decoding, N=1-8:
  padded still reads all E experts' weights), ~1.0-1.2x with >= 128 rows per expert, but
  loses up to 1.5x (0.67x) at N=8-128 with nearly every expert holding a few rows, where
  bmm's batched tiny GEMMs beat the per-group ones. Auto keeps ``padded`` there.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from accord.model.router import Router, RouterOutput
from torch import nn


@functools.cache
def grouped_mm_supported(device_type: str, dtype: torch.dtype) -> bool:
    """Whether ``torch._grouped_mm`` runs forward and backward here (checked on a tiny case)."""
    if not hasattr(torch, "_grouped_mm"):
        return False
    if device_type == "cuda" and (
        not torch.cuda.is_available() or torch.cuda.get_device_capability() < (9, 0)
    ):
        return False
    try:
        with torch.enable_grad():  # the first call may come from generation, under no_grad
            a = torch.randn(8, 16, device=device_type, dtype=dtype, requires_grad=True)
            b = torch.randn(2, 16, 16, device=device_type, dtype=dtype, requires_grad=True)
            offs = torch.tensor([3, 8], dtype=torch.int32, device=device_type)
            y = torch._grouped_mm(a, b, offs=offs)
            y.backward(torch.ones_like(y))
            ref = torch.cat([a[:3] @ b[0], a[3:] @ b[1]])
            return bool(torch.allclose(y.float(), ref.float(), atol=1e-2, rtol=1e-2))
    except Exception:
        return False


def _swiglu_interleaved(h_M2I: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up with gate on even and up on odd columns (ZONOS2's w13 layout)."""
    gu = h_M2I.unflatten(-1, (-1, 2))
    return F.silu(gu[..., 0]) * gu[..., 1]


class GroupedExperts(nn.Module):
    def __init__(self, dim: int, hidden: int, n_experts: int) -> None:
        super().__init__()
        self.dim, self.hidden, self.n_experts = dim, hidden, n_experts
        self.w13 = nn.Parameter(torch.empty(n_experts, 2 * hidden, dim))
        self.w2 = nn.Parameter(torch.empty(n_experts, dim, hidden))
        self.impl = "auto"

    def reset_parameters(self, out_std: float | None = None) -> None:
        nn.init.normal_(self.w13, std=1.0 / math.sqrt(self.dim))
        nn.init.normal_(self.w2, std=out_std or 1.0 / math.sqrt(self.hidden))

    def _gmm_aligned(self, dtype: torch.dtype) -> bool:
        """``torch._grouped_mm`` wants row strides (D, I and 2I elements) in multiples of 16 bytes."""
        return (self.dim * dtype.itemsize) % 16 == 0 and (self.hidden * dtype.itemsize) % 16 == 0

    def _impl(self, x: torch.Tensor, counts_E: torch.Tensor | None = None) -> str:
        """The kernel "auto" runs for these rows (``counts_E``: rows per expert, if known).

        CPU rule (measurements in the module docstring): ``grouped_mm`` when autograd records
        the call (training), when the batch is large (>= 128 rows per expert on average) or
        when padding would more than double the rows (skewed routing, decoding's few tokens);
        ``padded`` for small no-grad batches spread over all experts, and whenever
        ``grouped_mm`` does not run here or the shapes break its 16-byte stride rule.
        """
        if self.impl != "auto":
            return self.impl
        if not (grouped_mm_supported(x.device.type, x.dtype) and self._gmm_aligned(x.dtype)):
            return "padded"
        if x.device.type == "cuda":
            return "grouped_mm"
        if torch.is_grad_enabled() and (x.requires_grad or self.w13.requires_grad):
            return "grouped_mm"
        rows = x.shape[0] if counts_E is None else int(counts_E.sum())
        if rows >= 128 * self.n_experts:
            return "grouped_mm"
        if counts_E is None:
            return "padded"
        return "grouped_mm" if int(counts_E.max()) * self.n_experts > 2 * rows else "padded"

    def forward_sorted(
        self, x_MD: torch.Tensor, counts_E: torch.Tensor, impl: str | None = None
    ) -> torch.Tensor:
        """SwiGLU of rows already sorted by expert (``counts_E`` rows each), unweighted.

        The expert-parallel wrapper in ``accord.train.parallel`` calls this on its local rows.
        """
        impl = impl or self._impl(x_MD, counts_E)
        if impl == "grouped_mm":
            offs_E = counts_E.cumsum(0).to(torch.int32)
            h_M2I = torch._grouped_mm(x_MD, self.w13.transpose(1, 2).to(x_MD.dtype), offs=offs_E)
            return torch._grouped_mm(
                _swiglu_interleaved(h_M2I), self.w2.transpose(1, 2).to(x_MD.dtype), offs=offs_E
            )
        if impl == "padded":
            expert_M = torch.repeat_interleave(torch.arange(self.n_experts, device=x_MD.device), counts_E)
            return self._padded(x_MD, expert_M, counts_E)
        raise ValueError(f"unknown MoE impl {impl!r}")

    def forward(self, x_ND: torch.Tensor, experts_NK: torch.Tensor, weights_NK: torch.Tensor) -> torch.Tensor:
        """Weighted sum over each token's chosen experts of SwiGLU_e(x)."""
        K = experts_NK.shape[1]
        flat_experts_M = experts_NK.reshape(-1)
        counts_E = torch.bincount(flat_experts_M, minlength=self.n_experts)
        impl = self._impl(x_ND, counts_E)
        if impl == "loop":
            return self._forward_loop(x_ND, experts_NK, weights_NK)
        order_M = torch.argsort(flat_experts_M, stable=True)
        token_M = order_M // K  # the token each sorted slot belongs to
        y_MD = self.forward_sorted(x_ND.index_select(0, token_M), counts_E, impl)
        w_M1 = weights_NK.reshape(-1)[order_M].unsqueeze(-1).to(y_MD.dtype)
        return torch.zeros_like(x_ND).index_add(0, token_M, y_MD * w_M1)

    def _padded(self, x_MD: torch.Tensor, expert_M: torch.Tensor, counts_E: torch.Tensor) -> torch.Tensor:
        """[E, C, D] zero-padded layout + two bmm calls; C = the largest group."""
        E, M = self.n_experts, x_MD.shape[0]
        C = int(counts_E.max()) if M else 0
        starts_E = counts_E.cumsum(0) - counts_E
        slot_M = torch.arange(M, device=x_MD.device) - starts_E[expert_M]
        buf_ECD = x_MD.new_zeros(E, C, x_MD.shape[1]).index_put((expert_M, slot_M), x_MD)
        h_EC2I = torch.bmm(buf_ECD, self.w13.transpose(1, 2).to(x_MD.dtype))
        y_ECD = torch.bmm(_swiglu_interleaved(h_EC2I), self.w2.transpose(1, 2).to(x_MD.dtype))
        return y_ECD[expert_M, slot_M]

    def _forward_loop(
        self, x_ND: torch.Tensor, experts_NK: torch.Tensor, weights_NK: torch.Tensor
    ) -> torch.Tensor:
        """Per-expert Python loop (HF-Mixtral style). Reference and benchmark peer only.

        The stacked weights are split once with ``unbind``, as if each expert were its own
        ``nn.Linear``: indexing ``w13[e]`` inside the loop would make autograd build and add
        a full-size [E, 2I, D] gradient per expert, a cost that belongs to no sensible loop
        (it made this peer ~2x slower and the grouped kernels look better than they are).
        """
        out_ND = torch.zeros_like(x_ND)
        w13_E, w2_E = self.w13.unbind(0), self.w2.unbind(0)
        for e in range(self.n_experts):
            token_idx, slot_idx = torch.where(experts_NK == e)
            if token_idx.numel() == 0:
                continue
            h = x_ND[token_idx] @ w13_E[e].T.to(x_ND.dtype)
            y = _swiglu_interleaved(h) @ w2_E[e].T.to(x_ND.dtype)
            out_ND = out_ND.index_add(0, token_idx, y * weights_NK[token_idx, slot_idx, None].to(y.dtype))
        return out_ND


class MoE(nn.Module):
    """Router + experts; ``forward`` returns the output and the router's bookkeeping."""

    def __init__(self, dim: int, hidden: int, n_experts: int, topk: int, router_dim: int, use_eda: bool,
                 eps: float = 1e-5, strategy: str = "legacy") -> None:  # fmt: skip
        super().__init__()
        self.router = Router(dim, router_dim, n_experts, topk, use_eda=use_eda, eps=eps, strategy=strategy)
        self.experts = GroupedExperts(dim, hidden, n_experts)

    def forward(
        self, x_BTD: torch.Tensor, prev_state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, RouterOutput]:
        B, T, D = x_BTD.shape
        x_ND = x_BTD.reshape(B * T, D)
        prev_NR = None if prev_state is None else prev_state.reshape(B * T, -1)
        routed = self.router(x_ND, prev_NR)
        y_ND = self.experts(x_ND, routed.experts_NK, routed.weights_NK)
        routed.state_NR = routed.state_NR.view(B, T, -1)
        return y_ND.view(B, T, D), routed
