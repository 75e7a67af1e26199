"""Training loss: masked next-row NLL over audio targets, per codebook, plus the MoE balance term.

Row ``t``'s logits predict row ``t + 1``'s audio ids. ``mask_BTK[b, t, k]`` (the convention
of ``accord.model.sequence``) says the logit at row ``t`` for codebook ``k`` is trained on
``ids[b, t + 1, k]``: a real code or EOA, never pad, never a prompt row, never inside a
masked speaker crop, and never across a packed clip boundary (a clip's last row is False).
The total is token-weighted over every codebook; per-codebook means go to the metrics.

The 9 x 1026 output heads make fp32 logits large (zonos2-8b, one 6144-row sequence: 57 M
entries, 227 MB per fp32 copy), so ``masked_nll`` never makes an fp32 copy of them whole: it
takes the model's logits and runs the cross entropy over chunks of rows in fp32, saving
nothing but a reference to the logits; its backward recomputes each chunk's softmax and
writes the gradient straight into one tensor of the logits' dtype. It gives the numbers of
the plain ``F.cross_entropy`` over ``logits.float()`` (tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CHUNK_ELEMENTS = 1 << 24  # fp32 logits per chunk: 64 MB, ~1,800 rows of 9 x 1026


@dataclass
class LossOut:
    loss: torch.Tensor  # scalar to backpropagate: nll + balance_coef * balance
    nll: torch.Tensor  # scalar, token-weighted over codebooks
    nll_K: torch.Tensor  # [K] per-codebook mean (detached; NaN where a codebook had no target)
    n_tokens_K: torch.Tensor  # [K] target counts
    balance: torch.Tensor  # scalar (detached)


def _row_chunks(B: int, T: int, row_elements: int, chunk_elements: int):
    """(b, t0, t1) spans over rows [0, T - 1) of each sequence, each slice contiguous."""
    rows = max(1, chunk_elements // max(row_elements, 1))
    for b in range(B):
        for t0 in range(0, T - 1, rows):
            yield b, t0, min(t0 + rows, T - 1)


def _chunk_nll_grad(
    logits_RKV: torch.Tensor, targets_RK: torch.Tensor, mask_RK: torch.Tensor, want_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Masked NLL summed per codebook [K] and, if asked, d(NLL sum)/d(logits) (fp32).

    With ``want_grad`` one fp32 copy of the chunk is made and turned into the gradient in place.
    """
    x_RKV = logits_RKV.to(torch.float32, copy=want_grad)
    lse_RK = torch.logsumexp(x_RKV, dim=-1)
    nll_RK = (lse_RK - x_RKV.gather(-1, targets_RK.unsqueeze(-1)).squeeze(-1)) * mask_RK
    if not want_grad:
        return nll_RK.sum(0), None
    p_RKV = x_RKV.sub_(lse_RK.unsqueeze(-1)).exp_()
    p_RKV.scatter_add_(-1, targets_RK.unsqueeze(-1), torch.full_like(lse_RK, -1.0).unsqueeze(-1))
    return nll_RK.sum(0), p_RKV.mul_(mask_RK.unsqueeze(-1))


class _ChunkedMaskedNLL(torch.autograd.Function):
    """Per-codebook masked NLL sums [K] of ``logits[:, :-1]`` against ``targets``, by row chunks."""

    @staticmethod
    def forward(ctx, logits_BTKV, targets_BTK, mask_BTK, chunk_elements: int):
        B, T, K, V = logits_BTKV.shape
        sum_K = logits_BTKV.new_zeros(K, dtype=torch.float32)
        for b, t0, t1 in _row_chunks(B, T, K * V, chunk_elements):
            s_K, _ = _chunk_nll_grad(logits_BTKV[b, t0:t1], targets_BTK[b, t0:t1], mask_BTK[b, t0:t1], False)
            sum_K += s_K
        ctx.save_for_backward(logits_BTKV, targets_BTK, mask_BTK)
        ctx.chunk_elements = chunk_elements
        return sum_K

    @staticmethod
    def backward(ctx, dsum_K: torch.Tensor):
        logits_BTKV, targets_BTK, mask_BTK = ctx.saved_tensors
        B, T, K, V = logits_BTKV.shape
        grad_BTKV = torch.empty_like(logits_BTKV, memory_format=torch.contiguous_format)
        grad_BTKV[:, -1].zero_()  # the last row predicts nothing
        scale_K1 = dsum_K.float().unsqueeze(-1)
        for b, t0, t1 in _row_chunks(B, T, K * V, ctx.chunk_elements):
            _, g_RKV = _chunk_nll_grad(logits_BTKV[b, t0:t1], targets_BTK[b, t0:t1], mask_BTK[b, t0:t1], True)
            grad_BTKV[b, t0:t1] = g_RKV.mul_(scale_K1)
        return grad_BTKV, None, None, None


def _targets_and_mask(
    ids_BTC: torch.Tensor, mask_BTK: torch.Tensor, K: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row t's targets (``ids[t + 1]``, padded to T rows), its fp32 mask, and counts [K]."""
    targets_BTK = torch.zeros_like(ids_BTC[..., :K])
    targets_BTK[:, :-1] = ids_BTC[:, 1:, :K]
    maskf_BTK = mask_BTK.to(torch.float32, copy=True)  # never the caller's tensor
    maskf_BTK[:, -1] = 0.0
    return targets_BTK, maskf_BTK, maskf_BTK.sum(dim=(0, 1))


def masked_nll(
    logits_BTKV: torch.Tensor,
    ids_BTC: torch.Tensor,
    mask_BTK: torch.Tensor,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token-weighted mean NLL, per-codebook sum of NLL [K], per-codebook count [K])."""
    K = logits_BTKV.shape[2]
    targets_BTK, maskf_BTK, n_K = _targets_and_mask(ids_BTC, mask_BTK, K)
    nll_sum_K = _ChunkedMaskedNLL.apply(logits_BTKV, targets_BTK, maskf_BTK, chunk_elements)
    total = nll_sum_K.sum() / n_K.sum().clamp_min(1.0)
    return total, nll_sum_K, n_K


def training_loss(
    logits_BTKV: torch.Tensor,
    ids_BTC: torch.Tensor,
    mask_BTK: torch.Tensor,
    balance_loss: torch.Tensor | None,
    balance_coef: float,
) -> LossOut:
    """The masked NLL of ``logits_BTKV`` plus ``balance_coef`` times the balance term."""
    nll, nll_sum_K, n_K = masked_nll(logits_BTKV, ids_BTC, mask_BTK)
    balance = balance_loss if balance_loss is not None else nll.new_zeros(())
    loss = nll + balance_coef * balance
    per_K = (nll_sum_K / n_K).detach()
    return LossOut(loss=loss, nll=nll, nll_K=per_K, n_tokens_K=n_K.detach(), balance=balance.detach())
