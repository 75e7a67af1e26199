"""Masking is an :class:`AttentionMask`, built once per forward by ``ZonosModel.forward`` and
shared by every layer. It names the structure (``CAUSAL``; ``DOCUMENTS``: packed rows, causal
within each contiguous document; ``EXPLICIT``: a boolean [B, 1, T, S], True = may attend, for
KV-cache prefill and static-cache decoding) and carries only what its kernel needs: a
FlexAttention ``BlockMask`` built from per-block document ranges (no [T, T] tensor),
per-document segments for SDPA, ``cu_seqlens`` for flash-attn varlen.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask

from accord.model.kernels import Kernel, Structure, device_capability, documents_layout, select_kernel

FLEX_BLOCK = 128  # FlexAttention's sparse block size (rows and columns)


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
