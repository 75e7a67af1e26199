"""ZONOS2's delay pattern: codebook ``j`` is shifted right by ``j`` frames.

``apply_delay`` turns codes ``[K, T]`` into ``[K, T + K]``; positions before a codebook
starts hold ``AUDIO_PAD_ID``; after each codebook's last code comes one ``EOA_ID`` and then
pads. ``invert_delay`` undoes it exactly. The model sees delayed ids; the shift happens
outside the model, as in the released stack.
"""

from __future__ import annotations

import torch

from accord.core.vocab import AUDIO_PAD_ID, EOA_ID


def apply_delay(codes_KT: torch.Tensor, pad_id: int = AUDIO_PAD_ID, eoa_id: int = EOA_ID) -> torch.Tensor:
    """Delay codebook j by j frames and mark each codebook's end with ``eoa_id``."""
    if codes_KT.dim() != 2:
        raise ValueError(f"expected codes [K, T], got shape {tuple(codes_KT.shape)}")
    K, T = codes_KT.shape
    out_KS = torch.full((K, T + K), pad_id, dtype=codes_KT.dtype, device=codes_KT.device)
    for j in range(K):
        out_KS[j, j : j + T] = codes_KT[j]
        out_KS[j, j + T] = eoa_id
    return out_KS


def invert_delay(delayed_KS: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`apply_delay` for its output shape ``[K, T + K]``."""
    K, S = delayed_KS.shape
    T = S - K
    if T < 0:
        raise ValueError(f"delayed sequence of length {S} is shorter than the {K} codebooks")
    return torch.stack([delayed_KS[j, j : j + T] for j in range(K)])
