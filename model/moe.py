"""Dropless mixture-of-experts FFN: tokens sorted by expert, one grouped GEMM per projection.

Every routed token slot is computed (no capacity factor, nothing dropped), so a token's
output never depends on which other tokens share the batch: KV-cache decoding and packed
training give the same numbers as a lone forward.

Expert weights use ZONOS2's SonicMoE layout: ``w13`` [E, 2I, D] with the gate projection on
even rows and the up projection on odd rows, ``w2`` [E, D, I]. The kernels read that layout
as it is stored (views, no per-call transpose copies, no de-interleaving).

The step (``forward``): slots (token, k) are sorted by expert once (``argsort``), the rows
are gathered into that order and the outputs gathered back through the inverse permutation
(both backward passes are gathers too, no ``index_add`` atomics), the group offsets are a
device ``cumsum`` of per-expert counts, and the combine weights are applied in token order.
Nothing in the ``grouped_mm`` path copies a tensor to the host.

Kernels (``GroupedExperts.impl``; "auto" picks per call, see ``GroupedExperts.impl_for``):
- ``grouped_mm``: ``torch._grouped_mm`` over the expert-sorted rows with group offsets, no
  padding; empty experts cost nothing. Forward ``x @ w[e]^T`` takes the stored [E, out, in]
  weight as a K-major view; the backward (``grouped_linear``) computes the weight gradient
  directly in that layout (autograd's own formula returns it transposed, and the optimizer
  then copies it); the SwiGLU between the two GEMMs is one autograd node over the
  interleaved [M, 2I] (``swiglu_interleaved``) that saves only its input and writes its
  gradient once. Auto on CUDA sm90+ in bf16 (torch's CUTLASS kernel; elsewhere on CUDA
  torch runs a per-group loop with a host sync, so auto takes ``padded``), and on the CPU
  (torch 2.11 runs it there; probed once per device/dtype, forward and backward) for
  training and for large or tiny batches. It needs every row stride to be a multiple of
  16 bytes (``dim`` and ``hidden`` multiples of 4 in fp32, 8 in bf16), else ``padded``.
- ``padded``: one ``torch.bmm`` per projection over an [E, max_count, D] zero-padded layout
  (no Python loop per expert; one host sync for the padding size). Touches every expert's
  weights and pays for the padding.
- ``loop``: per-expert Python loop; the reference for tests and the benchmark peer only.

The auto choice depends only on device, dtype, the number of slots (tokens x top-k) and
whether autograd records the call, never on the routing: activation-checkpoint
recomputation, which reruns the forward with grad on, always reruns the same kernel. The
choice also goes through ``accord.model.recompute.recompute_stable``, so under the
trainer's checkpoint wrapper the recomputation replays the recorded kernel outright.

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
  bmm's batched tiny GEMMs beat the per-group ones. Auto keeps ``padded`` between E/2 and
  128 E slots; a skewed no-grad batch there pays for its padding, the price of a choice
  that cannot see the routing.
- this step (permutation gathers, weight-layout gradients, fused SwiGLU) vs the previous one
  (``index_select``/``index_add``, autograd's ``_grouped_mm`` backward, composite SwiGLU),
  ``grouped_mm`` forward+backward at the bench shape, median of 11 alternating reps: fp32
  1.04x / 1.15x / 1.16x (N=4096 top-1, N=4096 top-2, N=1024 top-2), bf16 1.04x / 0.94x /
  1.04x: a tie, the CPU is GEMM-bound. What changed targets the GPU (no atomics, no
  per-step transposed weight-gradient copy, fewer passes over [M, 2I], no host sync).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from accord.model.recompute import recompute_stable
from accord.model.router import Router, RouterOutput, expert_counts

IMPLS = ("auto", "grouped_mm", "padded", "loop")


def grouped_mm_supported(device_type: str, dtype: torch.dtype) -> bool:
    """Whether ``torch._grouped_mm`` runs forward and backward here.

    CUDA: sm90+ with bf16 only, decided from the capability (torch's CUTLASS kernel, offsets
    read on the device; anything else falls back inside torch to a per-group loop that copies
    the offsets to the host). No probe there: a probe syncs, which would fail inside a CUDA
    graph capture or under ``torch.cuda.set_sync_debug_mode("error")`` and be cached as "no".
    Other devices: checked once on a tiny case, forward and backward.
    """
    if not hasattr(torch, "_grouped_mm"):
        return False
    if device_type == "cuda":
        return (
            dtype == torch.bfloat16
            and torch.cuda.is_available()
            and torch.cuda.get_device_capability() >= (9, 0)
        )
    return grouped_mm_runs(device_type, dtype)


@functools.cache
def grouped_mm_runs(device_type: str, dtype: torch.dtype) -> bool:
    """Probe: the three ``_grouped_mm`` calls of ``grouped_linear`` (forward, dx, dw) on a tiny case.

    Plain ops without autograd, so a first call from inside an activation-checkpointed forward
    saves nothing the recomputation would not (an autograd probe there breaks the checkpoint).
    """
    try:
        with torch.no_grad():
            g = torch.Generator(device_type).manual_seed(0)
            x = torch.randn(8, 16, device=device_type, dtype=dtype, generator=g)
            w = torch.randn(2, 16, 16, device=device_type, dtype=dtype, generator=g)
            dy = torch.randn(8, 16, device=device_type, dtype=dtype, generator=g)
            offs = torch.tensor([3, 8], dtype=torch.int32, device=device_type)
            got = (
                torch._grouped_mm(x, w.transpose(1, 2), offs=offs),
                torch._grouped_mm(dy, w, offs=offs),
                torch._grouped_mm(dy.t(), x, offs=offs),
            )
            ref = (
                torch.cat([x[:3] @ w[0].T, x[3:] @ w[1].T]),
                torch.cat([dy[:3] @ w[0], dy[3:] @ w[1]]),
                torch.stack([dy[:3].T @ x[:3], dy[3:].T @ x[3:]]),
            )
            return all(
                torch.allclose(a.float(), b.float(), atol=5e-2, rtol=5e-2)
                for a, b in zip(got, ref, strict=True)
            )
    except Exception:
        return False


class _GroupedLinear(torch.autograd.Function):
    """``y[rows of e] = x[rows of e] @ w[e]^T`` with the weight in its stored [E, out, in] layout.

    Autograd's own ``_grouped_mm`` backward returns the weight gradient as [E, in, out] (the
    layout of the ``w.transpose(1, 2)`` view it was given), which the optimizer then copies
    into the parameter's layout every step; here it is computed as ``dy^T @ x`` directly in
    [E, out, in]. Both operands of every call are K-major or MN-major views, never copies.
    """

    @staticmethod
    def forward(ctx, x_MI: torch.Tensor, w_EOI: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x_MI, w_EOI, offs_E)
        return torch._grouped_mm(x_MI, w_EOI.transpose(1, 2), offs=offs_E)

    @staticmethod
    def backward(ctx, dy_MO: torch.Tensor):
        x_MI, w_EOI, offs_E = ctx.saved_tensors
        dy_MO = dy_MO.contiguous()
        dx = torch._grouped_mm(dy_MO, w_EOI, offs=offs_E) if ctx.needs_input_grad[0] else None
        dw = torch._grouped_mm(dy_MO.t(), x_MI, offs=offs_E) if ctx.needs_input_grad[1] else None
        return dx, dw, None


def grouped_linear(x_MI: torch.Tensor, w_EOI: torch.Tensor, offs_E: torch.Tensor) -> torch.Tensor:
    """Per-expert ``x @ w[e]^T`` over expert-sorted rows; ``offs_E``: int32 end row of each group."""
    return _GroupedLinear.apply(x_MI, w_EOI, offs_E)


class _InterleavedSwiGLU(torch.autograd.Function):
    """silu(gate) * up over ZONOS2's interleaved [M, 2I] (gate even, up odd), views only.

    Saves only its input (autograd's composite also keeps silu(gate)), and the backward writes
    both halves of the gradient straight into one interleaved [M, 2I] buffer instead of two
    zero-filled ``select_backward`` buffers and their sum. Same ops as the composite
    (``silu_backward`` on dy*up, dy*silu), so the numbers are identical.
    """

    @staticmethod
    def forward(ctx, h_M2I: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(h_M2I)
        gate_MI, up_MI = h_M2I.unflatten(-1, (-1, 2)).unbind(-1)
        return F.silu(gate_MI) * up_MI

    @staticmethod
    def backward(ctx, dy_MI: torch.Tensor) -> torch.Tensor:
        (h_M2I,) = ctx.saved_tensors
        gate_MI, up_MI = h_M2I.unflatten(-1, (-1, 2)).unbind(-1)
        dh_M2I = torch.empty_like(h_M2I, memory_format=torch.contiguous_format)
        dgate_MI, dup_MI = dh_M2I.unflatten(-1, (-1, 2)).unbind(-1)
        torch.mul(dy_MI, F.silu(gate_MI), out=dup_MI)
        torch.ops.aten.silu_backward.grad_input(dy_MI * up_MI, gate_MI, grad_input=dgate_MI)
        return dh_M2I


def swiglu_interleaved(h_M2I: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up with gate on even and up on odd columns (ZONOS2's w13 layout)."""
    if not torch.is_grad_enabled() or not h_M2I.requires_grad:
        gate_MI, up_MI = h_M2I.unflatten(-1, (-1, 2)).unbind(-1)
        return F.silu(gate_MI) * up_MI
    return _InterleavedSwiGLU.apply(h_M2I)


class _GatherRows(torch.autograd.Function):
    """``src[index]`` where every source row is read exactly ``fanout`` times, at known slots.

    ``inverse`` lists, for source row n, the ``fanout`` output rows that read it (flattened
    [N * fanout]), so the backward is a gather and a sum over the fanout, not ``index_add``'s
    atomics (slow for bf16, non-deterministic in float).
    """

    @staticmethod
    def forward(ctx, src_ND: torch.Tensor, index_M: torch.Tensor, inverse_M: torch.Tensor, fanout: int):
        ctx.save_for_backward(inverse_M)
        ctx.fanout, ctx.n_src = fanout, src_ND.shape[0]
        return src_ND.index_select(0, index_M)

    @staticmethod
    def backward(ctx, dout_MD: torch.Tensor):
        (inverse_M,) = ctx.saved_tensors
        d_MD = dout_MD.index_select(0, inverse_M)
        if ctx.fanout > 1:
            d_MD = d_MD.view(ctx.n_src, ctx.fanout, d_MD.shape[-1]).sum(1)
        return d_MD, None, None, None


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

    def impl_for(self, x: torch.Tensor, rows: int | None = None) -> str:
        """The kernel "auto" runs for ``rows`` expert slots (default ``x.shape[0]``) of ``x``.

        Decided only from what is fixed before routing: device, dtype, the slot count
        (tokens x top-k) and whether autograd records the call. Activation-checkpoint
        recomputation therefore reruns the forward's kernel (same inputs, grad on), and the
        choice reads nothing from the device (no host sync). CPU rule (measurements in the
        module docstring): ``grouped_mm`` when autograd records the call (training), for large
        batches (>= 128 slots per expert) and for tiny ones (at most E/2 slots: at least half
        the experts must be empty, as in decoding); ``padded`` for other no-grad batches, and
        whenever ``grouped_mm`` does not run here or the shapes break its 16-byte stride rule.
        """
        if self.impl not in IMPLS:
            raise ValueError(f"unknown MoE impl {self.impl!r}; known: {', '.join(IMPLS)}")
        if self.impl != "auto":
            return self.impl
        if not (grouped_mm_supported(x.device.type, x.dtype) and self._gmm_aligned(x.dtype)):
            return "padded"
        if x.device.type == "cuda":
            return "grouped_mm"
        if torch.is_grad_enabled() and (x.requires_grad or self.w13.requires_grad):
            return "grouped_mm"
        rows = x.shape[0] if rows is None else rows
        if rows >= 128 * self.n_experts or 2 * rows <= self.n_experts:
            return "grouped_mm"
        return "padded"

    def forward_sorted(
        self, x_MD: torch.Tensor, counts_E: torch.Tensor, impl: str | None = None
    ) -> torch.Tensor:
        """SwiGLU of rows already sorted by expert (``counts_E`` rows each), unweighted.

        The expert-parallel wrapper in ``accord.train.parallel`` calls this on its local rows.
        """
        impl = impl or recompute_stable("moe.impl", lambda: self.impl_for(x_MD))
        if impl == "grouped_mm":
            offs_E = counts_E.cumsum(0).to(torch.int32)  # on the device: no host sync
            h_M2I = grouped_linear(x_MD, self.w13.to(x_MD.dtype), offs_E)
            return grouped_linear(swiglu_interleaved(h_M2I), self.w2.to(x_MD.dtype), offs_E)
        if impl == "padded":
            expert_M = torch.repeat_interleave(torch.arange(self.n_experts, device=x_MD.device), counts_E)
            return self._padded(x_MD, expert_M, counts_E)
        raise ValueError(f"unknown MoE impl {impl!r} for expert-sorted rows")

    def forward(self, x_ND: torch.Tensor, experts_NK: torch.Tensor, weights_NK: torch.Tensor) -> torch.Tensor:
        """Weighted sum over each token's chosen experts of SwiGLU_e(x).

        Slots (token, k) are sorted by expert once; the gather into that order and the
        scatter back are both gathers through the permutation and its inverse (no atomics),
        and the combine weights stay in token order.
        """
        N, K = experts_NK.shape
        impl = recompute_stable("moe.impl", lambda: self.impl_for(x_ND, rows=N * K))
        if impl == "loop":
            return self._forward_loop(x_ND, experts_NK, weights_NK)
        flat_experts_M = experts_NK.reshape(-1)
        counts_E = expert_counts(flat_experts_M, self.n_experts)
        order_M = torch.argsort(flat_experts_M, stable=True)  # sorted slot -> (token, k) slot
        arange_M = torch.arange(order_M.shape[0], device=order_M.device)
        inverse_M = torch.empty_like(order_M).scatter_(0, order_M, arange_M)  # (token, k) -> sorted
        x_MD = _GatherRows.apply(x_ND, order_M // K, inverse_M, K)
        y_MD = self.forward_sorted(x_MD, counts_E, impl)
        y_NKD = _GatherRows.apply(y_MD, inverse_M, order_M, 1).view(N, K, x_ND.shape[1])
        w_NK1 = weights_NK.unsqueeze(-1).to(y_NKD.dtype)
        return (y_NKD[:, 0] * w_NK1[:, 0]) if K == 1 else (y_NKD * w_NK1).sum(1)

    def _padded(self, x_MD: torch.Tensor, expert_M: torch.Tensor, counts_E: torch.Tensor) -> torch.Tensor:
        """[E, C, D] zero-padded layout + two bmm calls; C = the largest group (one host sync)."""
        E, M = self.n_experts, x_MD.shape[0]
        C = int(counts_E.max()) if M else 0
        starts_E = counts_E.cumsum(0) - counts_E
        slot_M = torch.arange(M, device=x_MD.device) - starts_E[expert_M]
        buf_ECD = x_MD.new_zeros(E, C, x_MD.shape[1]).index_put((expert_M, slot_M), x_MD)
        h_EC2I = torch.bmm(buf_ECD, self.w13.transpose(1, 2).to(x_MD.dtype))
        y_ECD = torch.bmm(swiglu_interleaved(h_EC2I), self.w2.transpose(1, 2).to(x_MD.dtype))
        return y_ECD[expert_M, slot_M]

    def _forward_loop(
        self, x_ND: torch.Tensor, experts_NK: torch.Tensor, weights_NK: torch.Tensor
    ) -> torch.Tensor:
        """Per-expert Python loop (HF-Mixtral style). Reference and benchmark peer only.

        The stacked weights are split once with ``unbind``, as if each expert were its own
        ``nn.Linear``: indexing ``w13[e]`` inside the loop would make autograd build and add
        a full-size [E, 2I, D] gradient per expert, a cost that belongs to no sensible loop
        (it made this peer ~2x slower and the grouped kernels look better than they are).
        Autograd's composite SwiGLU, not the fused one: the reference shares no kernel code.
        """
        out_ND = torch.zeros_like(x_ND)
        w13_E, w2_E = self.w13.unbind(0), self.w2.unbind(0)
        for e in range(self.n_experts):
            token_idx, slot_idx = torch.where(experts_NK == e)
            if token_idx.numel() == 0:
                continue
            h = x_ND[token_idx] @ w13_E[e].T.to(x_ND.dtype)
            gate, up = h.unflatten(-1, (-1, 2)).unbind(-1)
            y = (F.silu(gate) * up) @ w2_E[e].T.to(x_ND.dtype)
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
