"""A fixed-size KV cache written at per-row device positions: every decode step has one shape.

This is the cache of the static-cache contract of ``ZonosModel.forward`` (the only cache it
takes): ``update`` writes the new rows of sequence b at ``length_B[b] + t`` (a device tensor,
advanced in place by the model) and returns the first ``span`` slots of the buffers; the
caller passes ``mask_B1TS`` saying which slots are valid, and each row's positions. Rows of a
batch may sit at different positions (prompts of different lengths decode side by side
without left padding), and no value is read back to the host, so a step can be captured in a
CUDA graph (``accord.model.decode``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StaticKVCache:
    k: list[torch.Tensor]  # per layer [B, G, max_len, hd]
    v: list[torch.Tensor]
    length: torch.Tensor  # [B] int64: next slot written per row (the model adds T after a forward)
    span: int  # slots ``update`` returns, i.e. the attention width S (<= max_len)

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
    ) -> StaticKVCache:
        shape = (batch, n_kv_heads, max_len, head_dim)
        return cls(
            k=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)],
            v=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)],
            length=torch.zeros(batch, dtype=torch.long, device=device),
            span=max_len,
        )

    @property
    def max_len(self) -> int:
        return self.k[0].shape[2]

    def set_span(self, span: int) -> None:
        if not 1 <= span <= self.max_len:
            raise ValueError(f"span {span} outside [1, max_len={self.max_len}]")
        self.span = span

    def update(
        self, layer: int, k_BGtd: torch.Tensor, v_BGtd: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write rows at ``length_B + t``; return K/V ``[B, G, span, hd]`` (unwritten slots stale).

        Writing past ``max_len`` raises on the CPU and is a device-side assert on CUDA: the
        decoder sizes the cache so it never happens.
        """
        B, G, t, d = k_BGtd.shape
        offs_t = torch.arange(t, device=k_BGtd.device)
        idx_BGtd = (self.length.view(B, 1, 1, 1) + offs_t.view(1, 1, t, 1)).expand(B, G, t, d)
        self.k[layer].scatter_(2, idx_BGtd, k_BGtd)
        self.v[layer].scatter_(2, idx_BGtd, v_BGtd)
        return self.k[layer][:, :, : self.span], self.v[layer][:, :, : self.span]
