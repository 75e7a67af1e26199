"""``torch._grouped_mm`` on the CPU: the edge cases auto can send it, and the auto choice."""

from __future__ import annotations

import pytest
import torch
from accord.model.moe import GroupedExperts, grouped_mm_supported

needs_gmm = pytest.mark.skipif(
    not grouped_mm_supported("cpu", torch.float32), reason="torch._grouped_mm does not run on this CPU"
)


def _experts(E=4, D=32, I=48, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    ex = GroupedExperts(D, I, E)
    ex.reset_parameters()
    return ex.to(dtype)


def _fwd_bwd(ex, impl, x_MD, counts_E):
    ex.zero_grad(set_to_none=True)
    x = x_MD.detach().clone().requires_grad_(True)
    y = ex.forward_sorted(x, counts_E, impl)
    y.backward(torch.ones_like(y))
    return y.detach(), x.grad, ex.w13.grad, ex.w2.grad


@needs_gmm
@pytest.mark.parametrize(
    "counts", [[5, 0, 7, 3], [0, 0, 0, 15], [15, 0, 0, 0], [0, 9, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
)
def test_grouped_mm_matches_padded_with_empty_experts(counts):
    ex = _experts()
    counts_E = torch.tensor(counts)
    x = torch.randn(int(counts_E.sum()), ex.dim)
    ref = _fwd_bwd(ex, "padded", x, counts_E)
    got = _fwd_bwd(ex, "grouped_mm", x, counts_E)
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    empty = counts_E == 0  # experts that saw no rows get exact zero gradients, not garbage
    assert (got[2][empty] == 0).all() and (got[3][empty] == 0).all()


@needs_gmm
def test_grouped_mm_zero_tokens_through_forward():
    ex = _experts()
    x = torch.randn(0, ex.dim, requires_grad=True)
    experts = torch.zeros(0, 2, dtype=torch.long)
    ex.impl = "grouped_mm"
    y = ex(x, experts, torch.zeros(0, 2))
    assert y.shape == (0, ex.dim)
    y.sum().backward()
    assert (ex.w13.grad == 0).all() and (ex.w2.grad == 0).all()


@pytest.mark.skipif(not grouped_mm_supported("cpu", torch.bfloat16), reason="no bf16 grouped_mm here")
def test_grouped_mm_bf16_matches_padded():
    ex = _experts(D=64, I=64, dtype=torch.bfloat16)
    counts_E = torch.tensor([6, 0, 9, 1])
    x = torch.randn(16, ex.dim, dtype=torch.bfloat16)
    ref = _fwd_bwd(ex, "padded", x, counts_E)
    got = _fwd_bwd(ex, "grouped_mm", x, counts_E)
    for a, b in zip(ref, got, strict=True):
        assert b.dtype == torch.bfloat16
        torch.testing.assert_close(b.float(), a.float(), atol=5e-2, rtol=2e-2)


@needs_gmm
def test_auto_avoids_grouped_mm_on_unaligned_shapes():
    """grouped_mm rejects row strides that are not multiples of 16 bytes (D=30 in fp32)."""
    ex = _experts(D=30, I=46)
    counts_E = torch.tensor([5, 0, 0, 3])  # skewed: auto would otherwise pick grouped_mm
    x = torch.randn(8, 30, requires_grad=True)
    with pytest.raises(RuntimeError):
        ex.forward_sorted(x, counts_E, "grouped_mm")
    assert ex._impl(x, counts_E) == "padded"
    experts = torch.tensor([[0], [0], [0], [3], [0], [3], [0], [3]])
    y = ex(x, experts, torch.ones(8, 1))
    y.sum().backward()
    ex.impl = "loop"
    torch.testing.assert_close(y, ex(x, experts, torch.ones(8, 1)), atol=1e-5, rtol=1e-4)


@needs_gmm
def test_auto_choice_on_cpu():
    ex = _experts(E=8)
    x = torch.randn(64, ex.dim)
    spread = torch.full((8,), 8)  # 64 rows, 8 per expert
    assert ex._impl(x, spread) == "grouped_mm"  # parameters require grad: training
    with torch.no_grad():
        assert ex._impl(x, spread) == "padded"  # small inference batch over every expert
        assert ex._impl(x[:2], torch.tensor([1, 0, 0, 1, 0, 0, 0, 0])) == "grouped_mm"  # decoding
        assert ex._impl(x, torch.tensor([57, 1, 1, 1, 1, 1, 1, 1])) == "grouped_mm"  # skewed
        big = torch.randn(128 * 8, ex.dim)
        assert ex._impl(big, torch.full((8,), 128)) == "grouped_mm"  # large batch
        assert ex._impl(x) == "padded" and ex._impl(big) == "grouped_mm"  # counts unknown
    ex.impl = "loop"
    assert ex._impl(x, spread) == "loop"
