"""Unit tests of the decoder's parts: causality, softcap, attention backends, RoPE, routing, EDA."""

from __future__ import annotations

import pytest
import torch

from accord.model.moe import GroupedExperts, grouped_mm_supported
from accord.model.rope import RotaryEmbedding, apply_rope
from accord.model.router import Router
from accord.model.zonos import ZonosModel

from .conftest import random_ids


def test_causality_future_rows_never_change_past_logits(debug_model, debug_cfg):
    ids = random_ids(debug_cfg, 2, 24)
    changed = ids.clone()
    changed[:, 15:] = random_ids(debug_cfg, 2, 9, seed=7)
    with torch.no_grad():
        a = debug_model(ids).logits_BTKV
        b = debug_model(changed).logits_BTKV
    torch.testing.assert_close(a[:, :15], b[:, :15], rtol=0, atol=1e-5)
    assert (a[:, 15:] - b[:, 15:]).abs().max() > 1e-3  # and the future rows do react


def test_softcap_bounds_logits(debug_cfg):
    torch.manual_seed(0)
    model = ZonosModel(debug_cfg)
    with torch.no_grad():
        model.multi_output.weight.mul_(1e4)  # push raw logits far past the cap
        out = model(random_ids(debug_cfg, 1, 8)).logits_BTKV
    assert out.abs().max() <= debug_cfg.loss_softcap
    assert out.abs().max() > 0.99 * debug_cfg.loss_softcap
    assert out.shape == (1, 8, debug_cfg.n_codebooks, debug_cfg.codebook_size + 2)


def test_model_backends_agree(debug_model, debug_cfg):
    ids = random_ids(debug_cfg, 2, 16)
    with torch.no_grad():
        a = debug_model(ids).logits_BTKV
        debug_model.set_attention_backend("reference")
        b = debug_model(ids).logits_BTKV
        debug_model.set_attention_backend("sdpa")
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_rope_is_interleaved_pairs():
    rope = RotaryEmbedding(head_dim=8)
    x = torch.zeros(1, 1, 1, 8)
    x[..., 0] = 1.0  # first pair = (1, 0)
    cos, sin = rope(torch.tensor([[1]]))
    y = apply_rope(x, cos, sin)
    # pair (x0, x1) rotates by angle 1 * theta^0 = 1 rad; the other pairs stay zero
    torch.testing.assert_close(
        y[0, 0, 0, :2], torch.tensor([torch.cos(torch.tensor(1.0)), torch.sin(torch.tensor(1.0))])
    )
    assert y[0, 0, 0, 2:].abs().max() == 0
    # relative: <R(p)q, R(p+d)k> depends on d only
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def dot(p, d):
        c1, s1 = rope(torch.tensor([[p]]))
        c2, s2 = rope(torch.tensor([[p + d]]))
        return (apply_rope(q, c1, s1) * apply_rope(k, c2, s2)).sum()

    torch.testing.assert_close(dot(3, 5), dot(40, 5), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("topk", [1, 2])
def test_routing_counts_topk(topk):
    torch.manual_seed(0)
    r = Router(dim=32, router_dim=16, n_experts=4, topk=topk, use_eda=False)
    x = torch.randn(50, 32)
    out = r(x)
    assert out.experts_NK.shape == (50, topk)
    assert int(out.counts_E.sum()) == 50 * topk
    assert torch.equal(out.counts_E, torch.bincount(out.experts_NK.flatten(), minlength=4))
    if topk == 2:
        assert (out.experts_NK[:, 0] != out.experts_NK[:, 1]).all()
    # combine weights are the unbiased probabilities, not renormalised over the k picks
    probs = torch.softmax(r.router_mlp(r.rmsnorm_eda(r.down_proj(x))), -1)
    torch.testing.assert_close(out.weights_NK, probs.gather(-1, out.experts_NK))
    if topk == 2:
        assert (out.weights_NK.sum(-1) < 1).all()


def test_bias_steers_choice_but_not_weights():
    torch.manual_seed(0)
    r = Router(dim=32, router_dim=16, n_experts=4, topk=1, use_eda=False)
    x = torch.randn(64, 32)
    with torch.no_grad():
        r.balancing_biases.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0]))
    out = r(x)
    assert (out.experts_NK == 2).all()  # bias dominates the choice
    probs = torch.softmax(r.router_mlp(r.rmsnorm_eda(r.down_proj(x))), -1)
    torch.testing.assert_close(out.weights_NK[:, 0], probs[:, 2])  # weight = unbiased prob


def test_balance_loss_gradient_lowers_bias_of_overused_expert():
    torch.manual_seed(0)
    r = Router(dim=32, router_dim=16, n_experts=4, topk=1, use_eda=False)
    with torch.no_grad():
        r.balancing_biases.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0]))
    out = r(torch.randn(64, 32))
    out.balance_loss.backward()
    grad = r.balancing_biases.grad
    torch.testing.assert_close(grad, torch.tensor([-0.25, -0.25, 0.75, -0.25]))  # u - mean(u)
    # nothing else gets a gradient from the balance term
    assert all(
        p.grad is None or p.grad.abs().max() == 0 for n, p in r.named_parameters() if n != "balancing_biases"
    )


def test_eda_state_flows_between_moe_layers(debug_model, debug_cfg):
    """Layer 2's router adds layer 1's pre-norm router state times router_states_scale."""
    seen = {}
    l1 = debug_model.layers[1].feed_forward.router
    l2 = debug_model.layers[2].feed_forward.router
    assert not l1.use_eda and not hasattr(l1, "router_states_scale")
    assert l2.use_eda
    l1.register_forward_hook(lambda m, a, out: seen.__setitem__("state1", out.state_NR))
    l2.register_forward_hook(lambda m, a, out: seen.__setitem__("in2", a))
    l2.register_forward_hook(lambda m, a, out: seen.__setitem__("state2", out.state_NR))
    ids = random_ids(debug_cfg, 1, 10)
    with torch.no_grad():
        debug_model.layers[2].feed_forward.router.router_states_scale.fill_(0.5)
        base = debug_model(ids).logits_BTKV
        x2, prev = seen["in2"]
        torch.testing.assert_close(prev, seen["state1"])
        torch.testing.assert_close(seen["state2"], l2.down_proj(x2) + 0.5 * seen["state1"])
        l2.router_states_scale.zero_()  # cut the flow: routing (hence logits) of layer 2 changes
        cut = debug_model(ids).logits_BTKV
    assert (base - cut).abs().max() > 1e-4


def _moe_case(E=4, D=32, I=48, N=40, K=2, seed=0):
    torch.manual_seed(seed)
    ex = GroupedExperts(D, I, E)
    ex.reset_parameters()
    x = torch.randn(N, D, requires_grad=True)
    experts = torch.stack([torch.randperm(E)[:K] for _ in range(N)])
    experts[:5] = torch.tensor([0, 1][:K])  # skew + leave room for an empty expert
    experts[experts == 3] = 0 if K == 1 else experts[experts == 3]
    weights = torch.rand(N, K)
    return ex, x, experts, weights


@pytest.mark.parametrize("K", [1, 2])
def test_moe_kernels_agree_forward_and_backward(K):
    ex, x, experts, weights = _moe_case(K=K)
    impls = ["loop", "padded"] + (["grouped_mm"] if grouped_mm_supported("cpu", torch.float32) else [])
    results = {}
    for impl in impls:
        ex.impl = impl
        ex.zero_grad()
        x.grad = None
        y = ex(x, experts, weights)
        y.backward(torch.ones_like(y))
        results[impl] = (y.detach(), x.grad.clone(), ex.w13.grad.clone(), ex.w2.grad.clone())
    for impl in impls[1:]:
        for a, b in zip(results["loop"], results[impl], strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_moe_is_dropless_and_batch_independent(debug_model, debug_cfg):
    """A clip's logits do not depend on what else is in the batch (no capacity, no dropping)."""
    ids = random_ids(debug_cfg, 3, 12)
    with torch.no_grad():
        alone = debug_model(ids[:1]).logits_BTKV
        batched = debug_model(ids).logits_BTKV
    torch.testing.assert_close(alone[0], batched[0], atol=1e-5, rtol=1e-5)
