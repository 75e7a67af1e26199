"""The MoE kernels on the CPU: edge cases auto can send them, the auto choice, checkpointing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from accord.model.moe import GroupedExperts, grouped_mm_runs, grouped_mm_supported, swiglu_interleaved
from accord.model.recompute import choice_log_contexts

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
    counts_E = torch.tensor([5, 0, 0, 3])
    x = torch.randn(8, 30, requires_grad=True)
    with pytest.raises(RuntimeError):
        ex.forward_sorted(x, counts_E, "grouped_mm")
    assert ex.impl_for(x) == "padded"
    experts = torch.tensor([[0], [0], [0], [3], [0], [3], [0], [3]])
    y = ex(x, experts, torch.ones(8, 1))
    y.sum().backward()
    ex.impl = "loop"
    torch.testing.assert_close(y, ex(x, experts, torch.ones(8, 1)), atol=1e-5, rtol=1e-4)


@needs_gmm
def test_auto_choice_on_cpu():
    ex = _experts(E=8)
    x = torch.randn(64, ex.dim)
    assert ex.impl_for(x) == "grouped_mm"  # parameters require grad: training
    with torch.no_grad():
        assert ex.impl_for(x) == "padded"  # small inference batch, most experts busy
        assert ex.impl_for(x[:4]) == "grouped_mm"  # decoding: at least half the experts empty
        assert ex.impl_for(x[:2], rows=4) == "grouped_mm"  # 2 tokens x top-2
        assert ex.impl_for(x[:4], rows=8) == "padded"
        assert ex.impl_for(torch.randn(128 * 8, ex.dim)) == "grouped_mm"  # large batch
    ex.impl = "loop"
    assert ex.impl_for(x) == "loop"
    ex.impl = "bogus"
    with pytest.raises(ValueError, match="unknown MoE impl"):
        ex.impl_for(x)


class _Recording(GroupedExperts):
    """Remembers the kernel of every expert-sorted call (forward and recomputation)."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.ran: list[str] = []

    def forward_sorted(self, x_MD, counts_E, impl=None):
        self.ran.append(impl or self.impl_for(x_MD))
        return super().forward_sorted(x_MD, counts_E, impl)


def _recording(E=8, D=32, I=48, seed=0):
    torch.manual_seed(seed)
    ex = _Recording(D, I, E)
    ex.reset_parameters()
    return ex


def _routing(N, E, K, skewed, seed=0):
    g = torch.Generator().manual_seed(seed)
    if skewed:  # nearly every slot on expert 0, the rest on 1 and 2: most experts empty
        experts = torch.zeros(N, K, dtype=torch.long)
        experts[:, 1:] = torch.randint(1, 3, (N, K - 1), generator=g)
        experts[: N // 8, 0] = 2
    else:
        experts = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(N)])
    return experts, torch.rand(N, K, generator=g)


def test_auto_choice_does_not_depend_on_the_routing():
    """Same shapes, skewed vs spread routing: the same kernel (no data-dependent choice)."""
    ex = _recording(E=8)
    x = torch.randn(24, ex.dim)
    with torch.no_grad():
        for skewed in (False, True):
            ex(x, *_routing(24, 8, 2, skewed))
    assert len(ex.ran) == 2 and ex.ran[0] == ex.ran[1]


@pytest.mark.parametrize("K", [1, 2])
@pytest.mark.parametrize("choice_log", [False, True])
def test_checkpoint_recomputation_reruns_the_forward_kernel(K, choice_log):
    """Non-reentrant checkpointing with skewed routing: recompute = forward, grads = no checkpoint.

    Plain ``checkpoint`` (the choice is a function of what recomputation keeps) and the
    trainer's wrapper with the recorded choice log.
    """
    ex = _recording(E=8)
    experts, w = _routing(40, 8, K, skewed=True)
    x = torch.randn(40, ex.dim)

    def run(use_checkpoint: bool):
        ex.zero_grad(set_to_none=True)
        xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        f = lambda a, b: ex(a * 1.5, experts, b).tanh()  # noqa: E731
        kw = {"context_fn": choice_log_contexts} if choice_log else {}
        y = checkpoint(f, xg, wg, use_reentrant=False, **kw) if use_checkpoint else f(xg, wg)
        y.pow(2).sum().backward()
        return y.detach(), xg.grad, wg.grad, ex.w13.grad, ex.w2.grad

    ex.ran.clear()
    ckpt = run(True)
    assert len(ex.ran) == 2 and ex.ran[0] == ex.ran[1], ex.ran  # forward, then recompute
    plain = run(False)
    for a, b in zip(plain, ckpt, strict=True):
        torch.testing.assert_close(b, a, atol=0, rtol=0)
    ex.impl = "loop"
    ref = run(False)
    for a, b in zip(ref, ckpt, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


@needs_gmm
def test_first_probe_inside_a_checkpointed_forward_keeps_the_checkpoint_valid():
    """The CPU probe may first run inside a checkpointed block: it must save no tensors there."""
    ex = _recording(E=8)
    experts, w = _routing(16, 8, 1, skewed=True)
    x = torch.randn(16, ex.dim, requires_grad=True)
    grouped_mm_runs.cache_clear()
    try:
        y = checkpoint(lambda a: ex(a, experts, w), x, use_reentrant=False)
        y.sum().backward()
    finally:
        grouped_mm_runs.cache_clear()
    assert ex.ran == ["grouped_mm", "grouped_mm"] and x.grad is not None


@pytest.mark.parametrize("K", [1, 2, 3])
def test_every_kernel_matches_the_loop_including_combine_weight_grads(K):
    ex = _experts(E=6)
    experts, w = _routing(30, 6, K, skewed=False, seed=K)
    experts[experts == 5] = 4 if K == 1 else experts[experts == 5]  # an empty expert when top-1
    x = torch.randn(30, ex.dim)
    impls = ["loop", "padded"] + (["grouped_mm"] if grouped_mm_supported("cpu", torch.float32) else [])
    got = {}
    for impl in impls:
        ex.impl = impl
        ex.zero_grad(set_to_none=True)
        xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        y = ex(xg, experts, wg)
        y.backward(torch.randn_like(y, generator=torch.Generator().manual_seed(1)))
        got[impl] = (y.detach(), xg.grad, wg.grad, ex.w13.grad, ex.w2.grad)
    for impl in impls[1:]:
        for a, b in zip(got["loop"], got[impl], strict=True):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_fused_swiglu_equals_autograd_composite_exactly():
    h = torch.randn(13, 2 * 24, requires_grad=True)
    dy = torch.randn(13, 24)
    gate, up = h.unflatten(-1, (-1, 2)).unbind(-1)
    ref = F.silu(gate) * up
    (ref_grad,) = torch.autograd.grad(ref, h, dy)
    out = swiglu_interleaved(h)
    (grad,) = torch.autograd.grad(out, h, dy)
    assert torch.equal(out, ref) and torch.equal(grad, ref_grad)
    assert grad.is_contiguous()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_has_no_host_sync_and_matches_the_loop():  # pragma: no cover - CPU-only machine
    torch.manual_seed(0)
    ex = GroupedExperts(256, 512, 8).cuda().to(torch.bfloat16)
    ex.reset_parameters()
    experts, w = _routing(512, 8, 2, skewed=True)
    experts, w = experts.cuda(), w.cuda()
    x = torch.randn(512, 256, device="cuda", dtype=torch.bfloat16)
    got = {}
    for impl in ("auto", "loop"):
        ex.impl = impl
        ex.zero_grad(set_to_none=True)
        xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        torch.cuda.synchronize()
        if impl == "auto" and grouped_mm_supported("cuda", torch.bfloat16):
            torch.cuda.set_sync_debug_mode("error")
        try:
            y = ex(xg, experts, wg)
            y.float().square().sum().backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        got[impl] = (y.float(), xg.grad.float(), wg.grad.float(), ex.w13.grad.float(), ex.w2.grad.float())
    for a, b in zip(got["loop"], got["auto"], strict=True):
        torch.testing.assert_close(b, a, atol=5e-2, rtol=5e-2)
