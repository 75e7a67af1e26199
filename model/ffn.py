"""Dense SwiGLU feed-forward in ZONOS2's layout: ``w_in`` [2, I, D] ([0] = up, [1] = gate)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ChunkedLinear(nn.Module):
    """A bias-free linear whose weight is stored as ``[chunks, out, in]`` (ZONOS2's wkv / w_in)."""

    def __init__(self, in_features: int, out_features: int, chunks: int) -> None:
        super().__init__()
        self.in_features, self.out_features, self.chunks = in_features, out_features, chunks
        self.weight = nn.Parameter(torch.empty(chunks, out_features, in_features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = F.linear(x, self.weight.reshape(self.chunks * self.out_features, self.in_features))
        return y.split(self.out_features, dim=-1)

    def reset_parameters(self, std: float | None = None) -> None:
        nn.init.normal_(self.weight, std=std or 1.0 / math.sqrt(self.in_features))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w_in = ChunkedLinear(dim, hidden, chunks=2)
        self.w_out = nn.Linear(hidden, dim, bias=False)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        up, gate = self.w_in(x_BTD)
        return self.w_out(up * F.silu(gate))
