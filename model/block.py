"""Pre-norm transformer block: x + attn(norm(x)), then + ffn(norm(x)); dense or MoE FFN."""

from __future__ import annotations

import torch
from torch import nn

from accord.model.attention import Attention
from accord.model.config import ModelConfig
from accord.model.ffn import FeedForward
from accord.model.masks import AttentionMask
from accord.model.moe import MoE
from accord.model.norms import RMSNorm
from accord.model.router import RouterOutput
from accord.model.static_cache import StaticKVCache


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.qk_norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.is_moe = cfg.is_moe_layer(layer_id)
        if self.is_moe:
            self.feed_forward: nn.Module = MoE(
                cfg.dim,
                cfg.ffn_dim,
                cfg.moe.n_experts,
                cfg.topk_for_layer(layer_id),
                cfg.moe.router.dim,
                use_eda=layer_id != cfg.moe.start_from_layer,
                eps=cfg.norm_eps,
                strategy=cfg.moe.router.strategy,
            )
        else:
            self.feed_forward = FeedForward(cfg.dim, cfg.ffn_dim)

    def forward(
        self,
        x_BTD: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: AttentionMask | None,
        router_state: torch.Tensor | None,
        cache: StaticKVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, RouterOutput | None]:
        """Returns (x, router state for the next MoE layer, this layer's routing or None).

        ``mask`` is built once per model forward (kernel included) and passed in as data, so
        an activation-checkpoint recomputation of this block runs the same attention kernel.
        A dense layer resets the EDA state, as ZONOS2's reference does.
        """
        h_BTD = x_BTD + self.attention(self.attention_norm(x_BTD), rope, mask, cache, self.layer_id)
        if self.is_moe:
            y_BTD, routed = self.feed_forward(self.ffn_norm(h_BTD), router_state)
            return h_BTD + y_BTD, routed.state_NR, routed
        return h_BTD + self.feed_forward(self.ffn_norm(h_BTD)), None, None
