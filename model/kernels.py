"""Kernels are chosen explicitly, never by SDPA's dispatcher: :func:`select_kernel` is a pure
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
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend

try:  # optional: `pip install accord[gpu]`
    from flash_attn import flash_attn_varlen_func
except Exception:  # pragma: no cover - not installable on this machine
    flash_attn_varlen_func = None


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


SDPA_BACKEND = {
    Kernel.SDPA_MATH: SDPBackend.MATH,
    Kernel.SDPA_FLASH: SDPBackend.FLASH_ATTENTION,
    Kernel.SDPA_EFFICIENT: SDPBackend.EFFICIENT_ATTENTION,
}
HALF_DTYPES = (torch.float16, torch.bfloat16)
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
    if q.structure is not Structure.EXPLICIT and q.dtype in HALF_DTYPES and sm80:
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
    if q.device_type != "cuda" or q.dtype not in HALF_DTYPES or q.head_dim > 256:
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
    if kernel in SDPA_BACKEND:
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
