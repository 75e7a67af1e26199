"""GQA attention with QK RMSNorm, per-head temperature and a per-head sigmoid output gate.

Math (matching ZONOS2): q = rmsnorm(Wq x) * |temp|, k = rmsnorm(Wk x) (eps 1e-6, no scale),
interleaved RoPE on both, softmax(q k^T / sqrt(hd)) v, each head's output times
sigmoid(gater x), then Wo.

Masking is an :class:`AttentionMask`, built once per forward by ``ZonosModel.forward`` and
shared by every layer. It names the structure (``CAUSAL``; ``DOCUMENTS``: packed rows, causal
within each contiguous document; ``EXPLICIT``: a boolean [B, 1, T, S], True = may attend, for
KV-cache prefill and static-cache decoding) and carries only what its kernel needs: a
FlexAttention ``BlockMask`` built from per-block document ranges (no [T, T] tensor),
per-document segments for SDPA, ``cu_seqlens`` for flash-attn varlen.

Kernels are chosen explicitly, never by SDPA's dispatcher: :func:`select_kernel` is a pure
function of (backend, device type, dtype, head_dim, structure, query length, capability)
and SDPA then runs under ``sdpa_kernel([that one])``. The choice is made once per forward,
outside any checkpointed block, so activation-checkpoint recomputation runs the same kernel
and saves the same tensors (the cuDNN/flash switch behind ``CheckpointError: 77 vs 74``).
cuDNN attention is never chosen: it built a new plan per KV length when decoding (1.4-5.8 ms
of CPU per call on an H200).

Backends (``ModelConfig.attn_backend``; ``BACKENDS`` maps each to its kernel policy):
- ``auto``: CUDA: FlexAttention for packed documents, SDPA flash (fp16/bf16, sm80+) or
  memory-efficient (fp32) for plain causal, memory-efficient for explicit masks. Elsewhere
  SDPA: the CPU flash kernel (masks, GQA, fp32/bf16, a backward), documents as one causal
  call per document. FlexAttention has no CPU backward in torch 2.11, so never auto there.
- ``sdpa``: SDPA only; documents as per-document calls (one host read of the doc ids).
- ``flex``: FlexAttention for causal and documents (compiled on CUDA; eager, forward-only on
  the CPU); explicit masks and one-row queries go to SDPA.
- ``flash``: the flash-attn package (varlen for documents); registered only when importable.
- ``reference``: float32 softmax with a dense [T, S] mask; the tests' ground truth.
Only ``reference`` ever builds a [T, T] mask for documents.

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

import enum
import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accord.model.ffn import ChunkedLinear
from accord.model.recompute import recompute_stable
from accord.model.rope import apply_rope
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, flex_attention

try:  # optional: `pip install accord[gpu]`
    from flash_attn import flash_attn_func, flash_attn_varlen_func
except Exception:  # pragma: no cover - not installable on this machine
    flash_attn_func = flash_attn_varlen_func = None

FLEX_BLOCK = 128  # FlexAttention's sparse block size (rows and columns)


class Structure(enum.Enum):
    CAUSAL = "causal"  # bottom-right aligned: query t sees keys <= t + S - T
    DOCUMENTS = "documents"  # causal and same document (packed training rows)
    EXPLICIT = "explicit"  # a given boolean [B, 1, T, S]


class Kernel(enum.Enum):
    REFERENCE = "reference"
    SDPA_MATH = "sdpa_math"
    SDPA_FLASH = "sdpa_flash"
    SDPA_EFFICIENT = "sdpa_efficient"
    FLEX = "flex"
    FLASH_ATTN = "flash_attn"


_SDPA_BACKEND = {
    Kernel.SDPA_MATH: SDPBackend.MATH,
    Kernel.SDPA_FLASH: SDPBackend.FLASH_ATTENTION,
    Kernel.SDPA_EFFICIENT: SDPBackend.EFFICIENT_ATTENTION,
}
_HALF = (torch.float16, torch.bfloat16)
Capability = tuple[int, int] | None  # CUDA compute capability; None off CUDA


# -- kernel choice ------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelQuery:
    """Everything a kernel choice may depend on: nothing that differs between a forward and
    its activation-checkpoint recomputation (no data, no grad mode)."""

    device_type: str
    dtype: torch.dtype
    head_dim: int
    structure: Structure
    q_len: int
    capability: Capability


def _sdpa_kernel_for(q: KernelQuery) -> Kernel:
    """The SDPA kernel that supports this case (no dispatcher: one named kernel)."""
    if q.device_type == "cpu":
        return Kernel.SDPA_FLASH  # CPU flash: masks, GQA, fp32/bf16, backward; 2-3.5x math
    if q.device_type != "cuda" or q.head_dim % 8 or q.head_dim > 256:
        return Kernel.SDPA_MATH
    sm80 = q.capability is not None and q.capability >= (8, 0)
    if q.structure is not Structure.EXPLICIT and q.dtype in _HALF and sm80:
        return Kernel.SDPA_FLASH  # no arbitrary masks in the CUDA flash kernel
    return Kernel.SDPA_EFFICIENT


def _flex_ok(q: KernelQuery) -> bool:
    return (
        q.structure is not Structure.EXPLICIT
        and q.q_len > 1
        and q.device_type in ("cuda", "cpu")
        and q.head_dim >= 16
        and q.head_dim & (q.head_dim - 1) == 0
    )


def _auto_policy(q: KernelQuery) -> Kernel:
    if q.device_type == "cuda" and q.structure is Structure.DOCUMENTS and _flex_ok(q):
        return Kernel.FLEX
    return _sdpa_kernel_for(q)


def _flex_policy(q: KernelQuery) -> Kernel:
    return Kernel.FLEX if _flex_ok(q) else _sdpa_kernel_for(q)


def _flash_policy(q: KernelQuery) -> Kernel:
    if q.structure is Structure.EXPLICIT:
        return _sdpa_kernel_for(q)
    if q.device_type != "cuda" or q.dtype not in _HALF or q.head_dim > 256:
        raise ValueError(
            f"flash-attn needs CUDA and fp16/bf16 with head_dim <= 256, got {q.device_type} {q.dtype}"
        )
    return Kernel.FLASH_ATTN


KernelPolicy = Callable[[KernelQuery], Kernel]
BACKENDS: dict[str, KernelPolicy] = {
    "auto": _auto_policy,
    "sdpa": _sdpa_kernel_for,
    "flex": _flex_policy,
    "reference": lambda q: Kernel.REFERENCE,
}
if flash_attn_varlen_func is not None:  # pragma: no cover - not installable on this machine
    BACKENDS["flash"] = _flash_policy


def resolve_backend(name: str) -> str:
    """Validate a backend name (``auto`` stays ``auto``: it decides per device at call time)."""
    if name == "flash" and name not in BACKENDS:
        raise ValueError("attention backend 'flash' needs the flash-attn package (pip install accord[gpu])")
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; known: {', '.join(BACKENDS)}")
    return name


def documents_layout(kernel: Kernel) -> str:
    """How packed documents reach ``kernel``: "block_mask" (FlexAttention), "cu_seqlens"
    (flash-attn varlen), "segments" (one causal SDPA call per document; on the CPU 1.1-1.9x
    faster than one call with the [T, T] mask), "dense" (the reference only).
    """
    if kernel is Kernel.FLEX:
        return "block_mask"
    if kernel is Kernel.FLASH_ATTN:
        return "cu_seqlens"
    if kernel in _SDPA_BACKEND:
        return "segments"
    return "dense"


@functools.cache
def select_kernel(
    backend: str,
    device_type: str,
    dtype: torch.dtype,
    head_dim: int,
    structure: Structure,
    q_len: int,
    capability: Capability,
) -> Kernel:
    """The kernel ``backend`` runs for this case: a pure function, so every call agrees."""
    query = KernelQuery(device_type, dtype, head_dim, structure, q_len, capability)
    return BACKENDS[resolve_backend(backend)](query)


def device_capability(device: torch.device) -> Capability:
    return torch.cuda.get_device_capability(device) if device.type == "cuda" else None


# -- masks --------------------------------------------------------------------------------
def doc_mask(doc_ids_BT: torch.Tensor) -> torch.Tensor:
    """Causal and same-document boolean mask [B, 1, T, T] (True = may attend), O(T^2)."""
    T = doc_ids_BT.shape[1]
    run_BT = doc_runs(doc_ids_BT)
    causal_TT = torch.ones(T, T, dtype=torch.bool, device=doc_ids_BT.device).tril()
    return ((run_BT.unsqueeze(2) == run_BT.unsqueeze(1)) & causal_TT).unsqueeze(1)


def doc_runs(doc_ids_BT: torch.Tensor) -> torch.Tensor:
    """Index of each row's document within its batch row: 0, 0, 1, 1, 1, 2, ...

    A document is a contiguous run of one id (as ``positions_from_docs`` counts positions):
    an id that comes back later starts a new document, on every kernel alike.
    """
    starts_BT = torch.zeros_like(doc_ids_BT, dtype=torch.int32)
    starts_BT[:, 1:] = (doc_ids_BT[:, 1:] != doc_ids_BT[:, :-1]).to(torch.int32)
    return starts_BT.cumsum(1, dtype=torch.int32)


def document_block_mask(doc_ids_BT: torch.Tensor, block: int = FLEX_BLOCK) -> BlockMask:
    """FlexAttention mask for causal attention within contiguous documents, no [T, T] tensor."""
    run_BT = doc_runs(doc_ids_BT)
    T = run_BT.shape[1]
    run_BP = F.pad(run_BT, (0, -(-T // block) * block - T), value=-1)  # padding matches only padding

    def same_doc_causal(b, h, q_idx, kv_idx):
        return (run_BP[b, q_idx] == run_BP[b, kv_idx]) & (q_idx >= kv_idx)

    return _runs_block_mask(run_BT, block, same_doc_causal)


def _causal(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    return q_idx >= kv_idx


def causal_block_mask(T: int, device: torch.device, block: int = FLEX_BLOCK) -> BlockMask:
    """FlexAttention's plain causal mask for every batch row."""
    return _runs_block_mask(torch.zeros(1, T, dtype=torch.int32, device=device), block, _causal)


def _runs_block_mask(run_BT: torch.Tensor, block: int, mask_mod: Callable) -> BlockMask:
    """Block structure of causal attention within runs, O((T / block)^2) per row.

    A kv block left of the diagonal is needed when it shares a run with the q block and fully
    visible when both lie inside one run (runs are nondecreasing along the row); a diagonal
    block is always partial. ``mask_mod`` decides element-wise inside partial blocks.
    """
    T = run_BT.shape[1]
    nb = -(-T // block)
    idx = torch.arange(nb, device=run_BT.device)
    first_BN = run_BT[:, idx * block]
    last_BN = run_BT[:, ((idx + 1) * block).clamp(max=T) - 1]
    below_NN = idx[None, :] < idx[:, None]  # kv block j left of q block i
    touch_BNN = below_NN & (last_BN[:, None, :] == first_BN[:, :, None])
    full_BNN = below_NN & (first_BN[:, None, :] == last_BN[:, :, None])
    partial_BNN = (touch_BNN & ~full_BNN) | (idx[None, :] == idx[:, None])

    def as_blocks(sel_BNN: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        num = sel_BNN.sum(-1, dtype=torch.int32)[:, None]
        order = torch.argsort(sel_BNN.to(torch.int8), dim=-1, descending=True, stable=True)
        return num, order.to(torch.int32)[:, None]

    kv_num, kv_idx = as_blocks(partial_BNN)
    full_num, full_idx = as_blocks(full_BNN)
    return BlockMask.from_kv_blocks(
        kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(T, T)
    )


def doc_segments(doc_ids_BT: torch.Tensor) -> tuple[tuple[int, int, int], ...]:
    """(row, start, end) of every contiguous document; one host read of the doc ids."""
    ids = doc_ids_BT.cpu()
    B, T = ids.shape
    out = []
    for b in range(B):
        change = (ids[b, 1:] != ids[b, :-1]).nonzero().flatten().add(1).tolist()
        bounds = [0, *change, T]
        out.extend((b, s, e) for s, e in itertools.pairwise(bounds))
    return tuple(out)


@dataclass(frozen=True, eq=False)  # holds tensors: identity, not elementwise, equality
class AttentionMask:
    """What each query may see and the kernel that runs it; built once per forward.

    Use :meth:`build`. Fields other than ``structure`` and ``kernel`` hold what that kernel
    needs and nothing else.
    """

    structure: Structure
    kernel: Kernel
    doc_ids_BT: torch.Tensor | None = None
    explicit_B1TS: torch.Tensor | None = None
    block_mask: BlockMask | None = None
    segments: tuple[tuple[int, int, int], ...] = ()
    cu_seqlens: torch.Tensor | None = None
    max_seqlen: int = 0

    @classmethod
    def build(
        cls,
        backend: str,
        *,
        device: torch.device,
        dtype: torch.dtype,
        head_dim: int,
        q_len: int,
        doc_ids_BT: torch.Tensor | None = None,
        explicit_B1TS: torch.Tensor | None = None,
    ) -> AttentionMask:
        if doc_ids_BT is not None and explicit_B1TS is not None:
            raise ValueError("pass doc_ids_BT or explicit_B1TS, not both")
        if explicit_B1TS is not None:
            if (
                explicit_B1TS.dtype != torch.bool
                or explicit_B1TS.dim() != 4
                or explicit_B1TS.shape[2] != q_len
            ):
                raise ValueError(
                    f"explicit mask must be bool [B, 1, {q_len}, S], got {explicit_B1TS.dtype} "
                    f"{tuple(explicit_B1TS.shape)}"
                )
            structure = Structure.EXPLICIT
        else:
            structure = Structure.CAUSAL if doc_ids_BT is None else Structure.DOCUMENTS
        kernel = select_kernel(
            backend, device.type, dtype, head_dim, structure, q_len, device_capability(device)
        )
        fields: dict = {}
        if structure is Structure.DOCUMENTS:
            fields["doc_ids_BT"] = doc_ids_BT
            layout = documents_layout(kernel)
            if layout == "block_mask":
                fields["block_mask"] = document_block_mask(doc_ids_BT)
            elif layout == "cu_seqlens":
                segs = doc_segments(doc_ids_BT)
                T = doc_ids_BT.shape[1]
                ends = [b * T + e for b, _, e in segs]
                fields["cu_seqlens"] = torch.tensor([0, *ends], dtype=torch.int32, device=device)
                fields["max_seqlen"] = max(e - s for _, s, e in segs)
            elif layout == "segments":
                fields["segments"] = doc_segments(doc_ids_BT)
        elif structure is Structure.CAUSAL and kernel is Kernel.FLEX:
            fields["block_mask"] = causal_block_mask(q_len, device)
        return cls(structure, kernel, explicit_B1TS=explicit_B1TS, **fields)

    def dense_mask(self, T: int, S: int, device: torch.device) -> torch.Tensor:
        """The boolean mask this structure means (reference path and tests)."""
        if self.structure is Structure.EXPLICIT:
            return self.explicit_B1TS
        if self.structure is Structure.DOCUMENTS:
            return doc_mask(self.doc_ids_BT)
        return torch.ones(T, S, dtype=torch.bool, device=device).tril(S - T)[None, None]


# -- kernels ------------------------------------------------------------------------------
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
        with sdpa_kernel([_SDPA_BACKEND[kernel]]):
            o = F.scaled_dot_product_attention(q, k_BGSd, v_BGSd, attn_mask=m)
        return o.reshape(B, H, T, hd)
    gqa = r > 1
    if gqa and kernel is Kernel.SDPA_EFFICIENT:  # no enable_gqa in the efficient kernel
        k_BGSd, v_BGSd = k_BGSd.repeat_interleave(r, 1), v_BGSd.repeat_interleave(r, 1)
        gqa = False
    with sdpa_kernel([_SDPA_BACKEND[kernel]]):
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
    if T != S and T != 1:
        raise ValueError("causal attention with a KV prefix needs an explicit mask")
    if structure is Structure.CAUSAL:
        return _sdpa(kernel, q_BHTd, k_BGSd, v_BGSd, causal=T > 1)
    if T != S:
        raise ValueError("packed documents cannot attend to a KV prefix")
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


# -- KV cache and the module --------------------------------------------------------------
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
        self.backend = "auto"  # used only when no mask is passed in

    def forward(
        self,
        x_BTD: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: AttentionMask | None = None,
        cache: KVCache | None = None,
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
