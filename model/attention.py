"""GQA attention with QK RMSNorm, per-head temperature and a per-head sigmoid output gate.

Math (matching ZONOS2): q = rmsnorm(Wq x) * |temp|, k = rmsnorm(Wk x) (eps 1e-6, no scale),
interleaved RoPE on both, softmax(q k^T / sqrt(hd)) v, each head's output times
sigmoid(gater x), then Wo.

The mask is an :class:`accord.model.masks.AttentionMask` and the kernel a choice of
:func:`accord.model.kernels.select_kernel`, both made once per forward; this module runs them.

CPU measurements (2-core Zen4 shared with other jobs, 2 threads, torch 2.11; B1 T2048 H8 G2
hd64, 8 packed documents of 256 rows; median CPU ms of 5-12 interleaved runs):

| path                                   | fp32 fwd | fp32 fwd+bwd | bf16 fwd | bf16 fwd+bwd |
|----------------------------------------|----------|--------------|----------|--------------|
| SDPA CPU flash, per-document (auto)    | 117      | 235-286      | 110      | 395          |
| SDPA CPU flash, [T, T] bool mask       | 177      | 523-551      | 141      | 448          |
| SDPA math, [T, T] bool mask            | 606      | 1040         | 554      | 1154         |
| FlexAttention eager (forward only)     | 1252     | -            | 935      | -            |
| FlexAttention compiled (forward only)  | first call compiles for 7-49 s           |||
| plain causal, SDPA CPU flash (no docs) | 95       | 310-332      | 81       | 292          |
| reference (float32 softmax)            | 690      | 1683         | 551      | 1402         |

The CPU flash kernel has a large fixed cost per call (a 256-row document costs ~1/7 of a
2048-row causal call, not 1/64), so per-document calls only match plain causal here; on CUDA
(H200, T6144, 8 documents) SDPA + bool mask / FlexAttention / plain causal measured
3.69 / 0.99 / 1.22 ms fwd+bwd. ``document_block_mask`` builds the FlexAttention mask from
per-block document ranges in 1.3-1.5 ms (T 2048-6144, CPU); ``create_block_mask`` evaluates
all T x T pairs: 72 ms at T=2048, 435 ms at T=6144.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import sdpa_kernel
from torch.nn.attention.flex_attention import flex_attention

from accord.model.ffn import ChunkedLinear
from accord.model.kernels import SDPA_BACKEND, Kernel, Structure
from accord.model.masks import AttentionMask
from accord.model.recompute import recompute_stable
from accord.model.rope import apply_rope
from accord.model.static_cache import StaticKVCache

try:  # optional: `pip install accord[gpu]`
    from flash_attn import flash_attn_func, flash_attn_varlen_func
except Exception:  # pragma: no cover - not installable on this machine
    flash_attn_func = flash_attn_varlen_func = None


def reference_attention(
    q_BHTd: torch.Tensor, k_BGSd: torch.Tensor, v_BGSd: torch.Tensor, mask_B1TS: torch.Tensor | None
) -> torch.Tensor:
    """Plain softmax attention with GQA by repetition; ``mask=None`` means causal."""
    H, G = q_BHTd.shape[1], k_BGSd.shape[1]
    k = k_BGSd.repeat_interleave(H // G, dim=1)
    v = v_BGSd.repeat_interleave(H // G, dim=1)
    scores = (q_BHTd.float() @ k.float().transpose(-1, -2)) / math.sqrt(q_BHTd.shape[-1])
    if mask_B1TS is None:
        T, S = scores.shape[-2:]
        mask_B1TS = torch.ones(T, S, dtype=torch.bool, device=scores.device).tril(S - T)
    scores = scores.masked_fill(~mask_B1TS, float("-inf"))
    return (scores.softmax(-1) @ v.float()).to(q_BHTd.dtype)


def _sdpa(
    kernel: Kernel,
    q_BHTd: torch.Tensor,
    k_BGSd: torch.Tensor,
    v_BGSd: torch.Tensor,
    mask_B1TS: torch.Tensor | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """One SDPA call pinned to ``kernel``; GQA folded into the query length for masks."""
    B, H, T, hd = q_BHTd.shape
    G = k_BGSd.shape[1]
    r = H // G
    if mask_B1TS is not None and r > 1 and kernel is not Kernel.SDPA_FLASH:
        # The efficient kernel has no enable_gqa and math copies K/V for it. Query heads of one
        # KV head share its keys: fold them into the query length; the mask repeats per head.
        q = q_BHTd.reshape(B, G, r * T, hd)
        m = mask_B1TS.expand(B, 1, T, mask_B1TS.shape[-1]).repeat(1, 1, r, 1)
        with sdpa_kernel([SDPA_BACKEND[kernel]]):
            o = F.scaled_dot_product_attention(q, k_BGSd, v_BGSd, attn_mask=m)
        return o.reshape(B, H, T, hd)
    gqa = r > 1
    if gqa and kernel is Kernel.SDPA_EFFICIENT:  # no enable_gqa in the efficient kernel
        k_BGSd, v_BGSd = k_BGSd.repeat_interleave(r, 1), v_BGSd.repeat_interleave(r, 1)
        gqa = False
    with sdpa_kernel([SDPA_BACKEND[kernel]]):
        return F.scaled_dot_product_attention(
            q_BHTd, k_BGSd, v_BGSd, attn_mask=mask_B1TS, is_causal=causal, enable_gqa=gqa
        )


@functools.cache
def _flex_fn(device_type: str) -> Callable[..., torch.Tensor]:
    """Compiled FlexAttention on CUDA (eager there materialises scores); eager on the CPU.

    Default dynamism: a second sequence length recompiles once with symbolic shapes instead
    of once per length (running past the recompile limit would fall back to eager).
    """
    return torch.compile(flex_attention) if device_type == "cuda" else flex_attention


def attend(
    q_BHTd: torch.Tensor, k_BGSd: torch.Tensor, v_BGSd: torch.Tensor, mask: AttentionMask
) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd)) v under ``mask``, on ``mask.kernel``."""
    T, S = q_BHTd.shape[2], k_BGSd.shape[2]
    kernel, structure = mask.kernel, mask.structure
    if kernel is Kernel.REFERENCE:
        return reference_attention(q_BHTd, k_BGSd, v_BGSd, mask.dense_mask(T, S, q_BHTd.device))
    gqa = q_BHTd.shape[1] != k_BGSd.shape[1]
    if kernel is Kernel.FLEX:
        if T != S:
            raise ValueError("FlexAttention here covers self-attention without a KV prefix")
        return _flex_fn(q_BHTd.device.type)(
            q_BHTd, k_BGSd, v_BGSd, block_mask=mask.block_mask, enable_gqa=gqa
        )
    if kernel is Kernel.FLASH_ATTN:  # pragma: no cover - flash-attn is not installable here
        return _flash_attn(q_BHTd, k_BGSd, v_BGSd, mask)
    if structure is Structure.EXPLICIT:
        return _sdpa(kernel, q_BHTd, k_BGSd, v_BGSd, mask_B1TS=mask.explicit_B1TS)
    if T != S:
        raise ValueError("attention over a KV prefix needs an explicit mask (the static-cache contract)")
    if structure is Structure.CAUSAL:
        return _sdpa(kernel, q_BHTd, k_BGSd, v_BGSd, causal=T > 1)
    # Documents: one causal call per document, no [T, T] mask (the work is sum(L^2), not T^2).
    parts = [
        _sdpa(
            kernel,
            q_BHTd[b : b + 1, :, s:e],
            k_BGSd[b : b + 1, :, s:e],
            v_BGSd[b : b + 1, :, s:e],
            causal=True,
        )
        for b, s, e in mask.segments
    ]
    rows: list[list[torch.Tensor]] = [[] for _ in range(q_BHTd.shape[0])]
    for (b, _, _), o in zip(mask.segments, parts, strict=True):
        rows[b].append(o)
    return torch.cat([torch.cat(r, dim=2) for r in rows], dim=0)


def _flash_attn(
    q_BHTd: torch.Tensor, k_BGSd: torch.Tensor, v_BGSd: torch.Tensor, mask: AttentionMask
) -> torch.Tensor:  # pragma: no cover - flash-attn is not installable here
    B, H, T, hd = q_BHTd.shape
    q_BTHd, k_BSGd, v_BSGd = (x.transpose(1, 2) for x in (q_BHTd, k_BGSd, v_BGSd))
    if mask.structure is Structure.DOCUMENTS:
        flat = [x.reshape(B * T, x.shape[2], hd) for x in (q_BTHd, k_BSGd, v_BSGd)]
        cu, n = mask.cu_seqlens, mask.max_seqlen
        o = flash_attn_varlen_func(*flat, cu, cu, n, n, causal=True)
        return o.view(B, T, H, hd).transpose(1, 2)
    o = flash_attn_func(q_BTHd, k_BSGd, v_BSGd, causal=T > 1)  # bottom-right aligned, like CAUSAL
    return o.transpose(1, 2)


# -- the module ----------------------------------------------------------------------------
class Attention(nn.Module):
    def __init__(
        self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int, qk_norm_eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.qk_norm_eps = qk_norm_eps
        self.wq = nn.Linear(dim, n_heads * head_dim, bias=False)
        self.wkv = ChunkedLinear(dim, n_kv_heads * head_dim, chunks=2)  # [0] = K, [1] = V
        self.wo = nn.Linear(n_heads * head_dim, dim, bias=False)
        self.temp = nn.Parameter(torch.ones(1, n_heads, 1))  # used as |temp|
        self.gater = nn.Linear(dim, n_heads, bias=False)
        self.backend = "auto"  # used only when no mask is passed in

    def forward(
        self,
        x_BTD: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: AttentionMask | None = None,
        cache: StaticKVCache | None = None,
        layer_id: int = 0,
    ) -> torch.Tensor:
        """``mask=None``: plain causal on ``self.backend`` (chosen here, replayed on recompute)."""
        B, T, _ = x_BTD.shape
        hd = self.head_dim
        q_BTHd = self.wq(x_BTD).view(B, T, self.n_heads, hd)
        k, v = self.wkv(x_BTD)
        k_BTGd = k.view(B, T, self.n_kv_heads, hd)
        v_BTGd = v.view(B, T, self.n_kv_heads, hd)
        temp_11H1 = self.temp.abs().view(1, 1, self.n_heads, 1)
        q_BTHd = F.rms_norm(q_BTHd, (hd,), eps=self.qk_norm_eps) * temp_11H1.to(q_BTHd.dtype)
        k_BTGd = F.rms_norm(k_BTGd, (hd,), eps=self.qk_norm_eps)
        cos, sin = rope
        q_BHTd = apply_rope(q_BTHd, cos, sin).transpose(1, 2)
        k_BGTd = apply_rope(k_BTGd, cos, sin).transpose(1, 2)
        v_BGTd = v_BTGd.transpose(1, 2)
        if cache is not None:
            k_BGTd, v_BGTd = cache.update(layer_id, k_BGTd, v_BGTd)
        if mask is None:
            mask = recompute_stable(
                "attention.mask",
                lambda: AttentionMask.build(
                    self.backend, device=q_BHTd.device, dtype=q_BHTd.dtype, head_dim=hd, q_len=T
                ),
            )
        o_BHTd = attend(q_BHTd, k_BGTd, v_BGTd, mask)
        gate_BTH1 = torch.sigmoid(self.gater(x_BTD)).unsqueeze(-1)
        o_BTHd = o_BHTd.transpose(1, 2) * gate_BTH1
        return self.wo(o_BTHd.reshape(B, T, self.n_heads * hd))
