"""Interleaved rotary embeddings (GPT-J / ``is_neox=False``): pairs (x[2i], x[2i+1]) rotate.

ZONOS2 rotates adjacent pairs, not the two halves of the head; loading its weights with
half-split RoPE silently degrades attention, so the layout is fixed here.
"""

from __future__ import annotations

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        # Not persistent: ZONOS2 checkpoints carry no RoPE tensors and its converter rejects extras.
        self.register_buffer("inv_freq", self._inv_freq(), persistent=False)

    def _inv_freq(self) -> torch.Tensor:
        return 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))

    def reset_parameters(self) -> None:
        self.inv_freq = self._inv_freq().to(self.inv_freq.device)

    def forward(self, positions_BT: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape [B, T, head_dim / 2] for integer positions."""
        angle_BTF = positions_BT.to(torch.float32).unsqueeze(-1) * self.inv_freq
        return angle_BTF.cos(), angle_BTF.sin()


def apply_rope(x_BTHd: torch.Tensor, cos_BTF: torch.Tensor, sin_BTF: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of ``x`` [B, T, H, hd] in float32, return in x's dtype."""
    xf = x_BTHd.float().unflatten(-1, (-1, 2))
    x0, x1 = xf[..., 0], xf[..., 1]
    cos, sin = cos_BTF.unsqueeze(2), sin_BTF.unsqueeze(2)
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2).to(x_BTHd.dtype)
