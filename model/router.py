"""The EDA router and its bias-based load balancing.

Routing (ZONOS2 "legacy", the strategy zonos2.cpp implements):
  r      = down_proj(x)                         [N, R]
  r      = r + r_prev * router_states_scale     (EDA, every MoE layer but the first)
  probs  = softmax(MLP(rmsnorm_eda(r)))         MLP = Linear, GELU, Linear, GELU, Linear(R -> E)
  choice = top-k(probs + balancing_biases)      (no gradient through the choice)
  weight = probs[choice]                        (unbiased, NOT renormalised over the k picks)
``r`` (before the norm) is handed to the next MoE layer: exponential depth averaging.

Balance term (the paper's L_bal = sum_e b_e * sg(u_e - mean(u))): u_e is the fraction of
token slots routed to expert e. The biases only enter the forward through the
non-differentiable top-k, so the gradient of L_bal w.r.t. b_e is exactly (u_e - mean u):
gradient *descent* lowers the bias of an over-used expert (u_e > mean) and raises it for an
under-used one, steering the next choices toward balance. With the "quantile" strategy the
bias is subtracted from the scores, so the term's sign flips to keep descent balancing.
The trainer adds ``balance_loss`` (summed over layers) to the LM loss; its coefficient acts
as the bias learning rate and it never affects any other parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from accord.model.norms import RMSNorm


def expert_counts(experts_M: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Slots per expert (int64 [E]) without a host sync.

    ``torch.bincount`` reads the largest id back to the host on CUDA to size its output;
    a ``scatter_add_`` into [E] zeros gives the same counts entirely on the device.
    """
    flat_M = experts_M.reshape(-1)
    return torch.zeros(n_experts, dtype=torch.long, device=flat_M.device).scatter_add_(
        0, flat_M, torch.ones_like(flat_M, dtype=torch.long)
    )


@dataclass
class RouterOutput:
    weights_NK: torch.Tensor  # combine weights (unbiased probs of the chosen experts)
    experts_NK: torch.Tensor  # int64 expert ids
    state_NR: torch.Tensor  # EDA state for the next MoE layer
    counts_E: torch.Tensor  # tokens-slots per expert (int64, detached)
    balance_loss: torch.Tensor  # scalar; gradient reaches only balancing_biases


class Router(nn.Module):
    def __init__(self, dim: int, router_dim: int, n_experts: int, topk: int, use_eda: bool, eps: float = 1e-5,
                 strategy: str = "legacy") -> None:  # fmt: skip
        super().__init__()
        self.n_experts, self.topk, self.strategy = n_experts, topk, strategy
        self.down_proj = nn.Linear(dim, router_dim, bias=True)
        self.router_mlp = nn.Sequential(
            nn.Linear(router_dim, router_dim, bias=True),
            nn.GELU(),
            nn.Linear(router_dim, router_dim, bias=True),
            nn.GELU(),
            nn.Linear(router_dim, n_experts, bias=False),
        )
        self.rmsnorm_eda = RMSNorm(router_dim, eps=eps)
        self.use_eda = use_eda
        if use_eda:  # absent on the first MoE layer, as in ZONOS2 checkpoints
            self.router_states_scale = nn.Parameter(torch.ones(router_dim))
        # A parameter (not a buffer) so the balance term can train it; same state-dict key.
        self.balancing_biases = nn.Parameter(torch.zeros(n_experts, dtype=torch.float32))

    def forward(self, x_ND: torch.Tensor, prev_state_NR: torch.Tensor | None = None) -> RouterOutput:
        r_NR = self.down_proj(x_ND)
        if self.use_eda and prev_state_NR is not None:
            r_NR = r_NR + prev_state_NR * self.router_states_scale
        probs_NE = F.softmax(self.router_mlp(self.rmsnorm_eda(r_NR)).float(), dim=-1)
        with torch.no_grad():
            bias_E = self.balancing_biases.detach().float()
            scores_NE = probs_NE + bias_E if self.strategy == "legacy" else probs_NE - bias_E
            experts_NK = scores_NE.topk(self.topk, dim=-1).indices
            counts_E = expert_counts(experts_NK, self.n_experts)
            util_E = counts_E.float() / max(experts_NK.numel(), 1)
            excess_E = util_E - util_E.mean()
        sign = 1.0 if self.strategy == "legacy" else -1.0
        balance_loss = sign * (self.balancing_biases.float() * excess_E).sum()
        weights_NK = probs_NE.gather(-1, experts_NK)
        return RouterOutput(weights_NK, experts_NK, r_NR, counts_E, balance_loss)
