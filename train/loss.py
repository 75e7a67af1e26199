"""Training loss: masked next-row NLL over audio targets, per codebook, plus the MoE balance term.

Row ``t``'s logits predict row ``t + 1``'s audio ids. ``mask_BTK[b, t, k]`` (the convention
of ``accord.model.sequence``) says the logit at row ``t`` for codebook ``k`` is trained on
``ids[b, t + 1, k]``: a real code or EOA, never pad, never a prompt row, never inside a
masked speaker crop, and never across a packed clip boundary (a clip's last row is False).
The total is token-weighted over every codebook; per-codebook means go to the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossOut:
    loss: torch.Tensor  # scalar to backpropagate: nll + balance_coef * balance
    nll: torch.Tensor  # scalar, token-weighted over codebooks
    nll_K: torch.Tensor  # [K] per-codebook mean (detached; NaN where a codebook had no target)
    n_tokens_K: torch.Tensor  # [K] target counts
    balance: torch.Tensor  # scalar (detached)


def masked_nll(
    logits_BTKV: torch.Tensor, ids_BTC: torch.Tensor, mask_BTK: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token-weighted mean NLL, per-codebook sum of NLL [K], per-codebook count [K])."""
    K = logits_BTKV.shape[2]
    logits = logits_BTKV[:, :-1].float()
    targets_BTK = ids_BTC[:, 1:, :K]
    mask = mask_BTK[:, :-1].to(logits.dtype)
    nll_BTK = F.cross_entropy(logits.permute(0, 3, 1, 2), targets_BTK, reduction="none")
    nll_sum_K = (nll_BTK * mask).sum(dim=(0, 1))
    n_K = mask.sum(dim=(0, 1))
    total = nll_sum_K.sum() / n_K.sum().clamp_min(1.0)
    return total, nll_sum_K, n_K


def training_loss(
    logits_BTKV: torch.Tensor,
    ids_BTC: torch.Tensor,
    mask_BTK: torch.Tensor,
    balance_loss: torch.Tensor | None,
    balance_coef: float,
) -> LossOut:
    nll, nll_sum_K, n_K = masked_nll(logits_BTKV, ids_BTC, mask_BTK)
    balance = balance_loss if balance_loss is not None else nll.new_zeros(())
    loss = nll + balance_coef * balance
    per_K = (nll_sum_K / n_K).detach()
    return LossOut(loss=loss, nll=nll, nll_K=per_K, n_tokens_K=n_K.detach(), balance=balance.detach())
