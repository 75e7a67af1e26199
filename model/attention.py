"""GQA attention with QK RMSNorm, per-head temperature and a per-head sigmoid output gate.

Math (matching ZONOS2): q = rmsnorm(Wq x) * |temp|, k = rmsnorm(Wk x) (eps 1e-6, no scale),
interleaved RoPE on both, softmax(q k^T / sqrt(hd)) v, each head's output times
sigmoid(gater x), then Wo. Masking comes in as ``None`` (plain causal), or an explicit
boolean mask [B, 1, T, S] (packed documents, KV-cache prefill); True = may attend.
Backends: flash-attn (only when importable and on CUDA), torch SDPA, and an explicit
reference used by the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accord.model.ffn import ChunkedLinear
from accord.model.rope import apply_rope
from torch import nn

try:  # optional: `pip install accord[gpu]`
    from flash_attn import flash_attn_func as _flash_attn_func
except Exception:  # pragma: no cover - not installable on this machine
    _flash_attn_func = None


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


def sdpa_attention(
    q_BHTd: torch.Tensor, k_BGSd: torch.Tensor, v_BGSd: torch.Tensor, mask_B1TS: torch.Tensor | None
) -> torch.Tensor:
    gqa = q_BHTd.shape[1] != k_BGSd.shape[1]
    if mask_B1TS is None:
        causal = q_BHTd.shape[2] > 1
        if causal and q_BHTd.shape[2] != k_BGSd.shape[2]:
            raise ValueError("causal attention with a KV prefix needs an explicit mask")
        return F.scaled_dot_product_attention(q_BHTd, k_BGSd, v_BGSd, is_causal=causal, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q_BHTd, k_BGSd, v_BGSd, attn_mask=mask_B1TS, enable_gqa=gqa)


def flash_attention(
    q_BHTd: torch.Tensor, k_BGSd: torch.Tensor, v_BGSd: torch.Tensor, mask_B1TS: torch.Tensor | None
) -> torch.Tensor:
    """flash-attn for the plain-causal case (packed documents go through SDPA's mask path)."""
    if _flash_attn_func is None or not q_BHTd.is_cuda or mask_B1TS is not None:
        return sdpa_attention(q_BHTd, k_BGSd, v_BGSd, mask_B1TS)
    o = _flash_attn_func(
        q_BHTd.transpose(1, 2), k_BGSd.transpose(1, 2), v_BGSd.transpose(1, 2), causal=q_BHTd.shape[2] > 1
    )
    return o.transpose(1, 2)


BACKENDS = {"sdpa": sdpa_attention, "reference": reference_attention, "flash": flash_attention}


def resolve_backend(name: str) -> str:
    if name == "auto":
        return "flash" if _flash_attn_func is not None and torch.cuda.is_available() else "sdpa"
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; known: auto, {', '.join(BACKENDS)}")
    return name


@dataclass
class KVCache:
    """Preallocated per-layer K/V [B, G, max_len, hd]; ``length`` = positions already filled."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    length: int = 0

    @classmethod
    def empty(
        cls,
        n_layers: int,
        batch: int,
        n_kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> KVCache:
        shape = (batch, n_kv_heads, max_len, head_dim)
        return cls(
            k=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)],
            v=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)],
        )

    @property
    def max_len(self) -> int:
        return self.k[0].shape[2]

    def update(
        self, layer: int, k_BGtd: torch.Tensor, v_BGtd: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = k_BGtd.shape[2]
        end = self.length + t
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} > {self.max_len} positions")
        self.k[layer][:, :, self.length : end] = k_BGtd
        self.v[layer][:, :, self.length : end] = v_BGtd
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


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
        self.backend = "sdpa"

    def forward(
        self,
        x_BTD: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask_B1TS: torch.Tensor | None = None,
        cache: KVCache | None = None,
        layer_id: int = 0,
    ) -> torch.Tensor:
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
        o_BHTd = BACKENDS[self.backend](q_BHTd, k_BGTd, v_BGTd, mask_B1TS)
        gate_BTH1 = torch.sigmoid(self.gater(x_BTD)).unsqueeze(-1)
        o_BTHd = o_BHTd.transpose(1, 2) * gate_BTH1
        return self.wo(o_BTHd.reshape(B, T, self.n_heads * hd))
