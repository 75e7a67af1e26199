"""Masked per-codebook NLL: only masked entries count, shifted by one row, token-weighted."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from accord.train.loss import masked_nll, training_loss


def test_masked_nll_matches_a_direct_computation() -> None:
    g = torch.Generator().manual_seed(0)
    B, T, K, V = 2, 7, 3, 11
    logits = torch.randn(B, T, K, V, generator=g)
    ids = torch.randint(0, V, (B, T, K + 1), generator=g)
    mask = torch.rand(B, T, K, generator=g) > 0.4
    total, sum_K, n_K = masked_nll(logits, ids, mask)
    num, den = 0.0, 0
    for b in range(B):
        for t in range(T - 1):
            for k in range(K):
                if mask[b, t, k]:
                    num += float(F.cross_entropy(logits[b, t, k][None], ids[b, t + 1, k][None]))
                    den += 1
    assert abs(float(total) - num / den) < 1e-5
    assert int(n_K.sum()) == den and abs(float(sum_K.sum()) - num) < 1e-4


def test_unmasked_targets_do_not_matter_and_balance_is_added() -> None:
    logits = torch.randn(1, 5, 2, 4, requires_grad=True)
    ids = torch.zeros(1, 5, 3, dtype=torch.long)
    mask = torch.zeros(1, 5, 2, dtype=torch.bool)
    mask[0, 1, 0] = True
    a = training_loss(logits, ids, mask, torch.tensor(2.0), 0.5)
    ids2 = ids.clone()
    ids2[0, 4, :] = 3  # not a target: row 3's mask is False
    b = training_loss(logits, ids2, mask, torch.tensor(2.0), 0.5)
    assert torch.equal(a.loss, b.loss)
    assert abs(float((a.loss - a.nll).detach()) - 1.0) < 1e-6
    a.loss.backward()
    assert logits.grad[0, 1, 0].abs().sum() > 0 and logits.grad[0, 2].abs().sum() == 0
    assert torch.isnan(a.nll_K[1])  # no target in codebook 1
