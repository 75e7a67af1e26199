"""Masked per-codebook NLL: only masked entries count, shifted by one row, token-weighted."""

from __future__ import annotations

import pytest
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


def _plain_masked_nll(logits, ids, mask):
    """The loss before chunking: one F.cross_entropy over the whole fp32 logits."""
    K = logits.shape[2]
    lf = logits[:, :-1].float()
    nll = F.cross_entropy(lf.permute(0, 3, 1, 2), ids[:, 1:, :K], reduction="none")
    m = mask[:, :-1].float()
    sum_K, n_K = (nll * m).sum(dim=(0, 1)), m.sum(dim=(0, 1))
    return sum_K.sum() / n_K.sum().clamp_min(1.0), sum_K, n_K


def _case(B=2, T=9, K=3, V=13, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, K, V, generator=g) * 3
    ids = torch.randint(0, V, (B, T, K + 1), generator=g)
    mask = torch.rand(B, T, K, generator=g) > 0.3
    return logits, ids, mask


@pytest.mark.parametrize("chunk_elements", [1, 2 * 3 * 13, 10**9])  # 1 row, 2 rows, everything
def test_chunked_masked_nll_equals_the_plain_loss_and_its_gradient(chunk_elements) -> None:
    logits, ids, mask = _case()
    dy = torch.randn(3)  # weights on the per-codebook sums, as well as the mean
    ref_in, got_in = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ref = _plain_masked_nll(ref_in, ids, mask)
    got = masked_nll(got_in, ids, mask, chunk_elements=chunk_elements)
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    (ref[0] * 2 + (ref[1] * dy).sum()).backward()
    (got[0] * 2 + (got[1] * dy).sum()).backward()
    torch.testing.assert_close(got_in.grad, ref_in.grad, atol=1e-6, rtol=1e-5)
    assert (got_in.grad[:, -1] == 0).all()


def test_chunked_masked_nll_keeps_bf16_logits_bf16() -> None:
    logits, ids, mask = _case()
    lb = logits.bfloat16().requires_grad_(True)
    total, sum_K, _ = masked_nll(lb, ids, mask, chunk_elements=50)
    ref = _plain_masked_nll(lb.detach(), ids, mask)
    torch.testing.assert_close(sum_K, ref[1], atol=1e-4, rtol=1e-5)
    total.backward()
    assert lb.grad.dtype == torch.bfloat16


def test_masked_nll_leaves_a_float_mask_untouched() -> None:
    logits, ids, mask = _case()
    maskf = mask.float()
    before = maskf.clone()
    masked_nll(logits, ids, maskf)
    assert torch.equal(maskf, before)
