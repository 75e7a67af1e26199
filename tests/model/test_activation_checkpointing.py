"""Activation checkpointing recomputes exactly what the forward ran, by construction.

The CUDA failure (``CheckpointError: ... 77 vs 74``) came from SDPA's dispatcher choosing
another kernel in the recomputation. On the CPU the same class of bug shows when the kernel
choice flips between the two runs (the math and flash kernels save different tensors).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.checkpoint import CheckpointError, checkpoint

from accord.model import masks
from accord.model.kernels import Kernel
from accord.model.recompute import RecomputeMismatchError, choice_log_contexts, recompute_stable
from accord.model.zonos import ZonosModel
from accord.train.engine import apply_activation_checkpointing

from .conftest import random_ids

DOCS_BT = torch.tensor([[0] * 9 + [1] * 15, [2] * 16 + [3] * 8])


def _flipping_select_kernel(monkeypatch) -> list[Kernel]:
    """select_kernel that alternates math / flash on successive calls; returns the call log."""
    calls: list[Kernel] = []

    def flip(*_args) -> Kernel:
        calls.append(Kernel.SDPA_MATH if len(calls) % 2 == 0 else Kernel.SDPA_FLASH)
        return calls[-1]

    monkeypatch.setattr(masks, "select_kernel", flip)
    return calls


def _grads(model: ZonosModel, ids: torch.Tensor, docs: torch.Tensor | None) -> dict[str, torch.Tensor]:
    model.zero_grad()
    out = model(ids, doc_ids_BT=docs)
    (out.logits_BTKV.float().square().mean() + out.balance_loss).backward()
    # checkpoint_wrapper adds a module level to parameter names (not to state_dict keys)
    return {
        n.replace("_checkpoint_wrapped_module.", ""): p.grad.clone()
        for n, p in model.named_parameters()
        if p.grad is not None
    }


@pytest.fixture
def pair(debug_cfg):
    torch.manual_seed(0)
    plain = ZonosModel(debug_cfg).train()
    ac = copy.deepcopy(plain)
    apply_activation_checkpointing(ac)
    return plain, ac


@pytest.mark.parametrize("docs", [None, DOCS_BT], ids=["causal", "packed"])
def test_checkpointed_gradients_equal_plain_gradients(pair, debug_cfg, docs):
    plain, ac = pair
    ids = random_ids(debug_cfg, 2, 24)
    expected, got = _grads(plain, ids, docs), _grads(ac, ids, docs)
    assert got.keys() == expected.keys() and len(got) > 20
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)
    assert list(ac.state_dict()) == list(plain.state_dict())  # ZONOS2 layout kept


def test_wrapping_twice_is_a_no_op(pair):
    _, ac = pair
    before = [id(layer) for layer in ac.layers]
    apply_activation_checkpointing(ac)
    assert [id(layer) for layer in ac.layers] == before


def test_model_forward_chooses_once_so_recompute_cannot_differ(pair, debug_cfg, monkeypatch):
    """The kernel travels into the blocks as data: a flipping chooser is asked once per forward."""
    plain, ac = pair
    ids = random_ids(debug_cfg, 2, 24)
    expected = _grads(plain, ids, DOCS_BT)
    calls = _flipping_select_kernel(monkeypatch)
    got = _grads(ac, ids, DOCS_BT)
    assert calls == [Kernel.SDPA_MATH]
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)


def _block_inputs(model: ZonosModel, cfg, T: int = 24):
    x = torch.randn(2, T, cfg.dim, requires_grad=True)
    rope = model.rope(torch.arange(T).expand(2, T))
    return x, rope


def test_a_choice_inside_a_block_is_replayed_on_recompute(pair, debug_cfg, monkeypatch):
    """A block that chooses its kernel itself (mask=None) sees the forward's choice again."""
    plain, ac = pair
    x, rope = _block_inputs(plain, debug_cfg)
    calls = _flipping_select_kernel(monkeypatch)
    y_plain = plain.layers[0](x, rope, None, None)[0]
    g_plain = torch.autograd.grad(y_plain.square().sum(), x)[0]
    calls.clear()
    y_ac = ac.layers[0](x, rope, None, None)[0]
    g_ac = torch.autograd.grad(y_ac.square().sum(), x)[0]
    assert calls == [Kernel.SDPA_MATH]  # recorded once, replayed in the recomputation
    torch.testing.assert_close(y_ac, y_plain)
    torch.testing.assert_close(g_ac, g_plain, atol=1e-6, rtol=1e-5)


def test_without_replay_the_same_flip_breaks_checkpointing(pair, debug_cfg, monkeypatch):
    """The hazard is real: plain non-reentrant checkpointing of that block fails on the flip."""
    plain, _ = pair
    x, rope = _block_inputs(plain, debug_cfg)
    _flipping_select_kernel(monkeypatch)
    block = plain.layers[0]
    y = checkpoint(lambda x_: block(x_, rope, None, None)[0], x, use_reentrant=False)
    with pytest.raises(CheckpointError):
        torch.autograd.grad(y.square().sum(), x)


def test_recomputation_that_diverges_raises_clearly():
    forward_ctx, recompute_ctx = choice_log_contexts()
    with forward_ctx:
        assert recompute_stable("attention.mask", lambda: "math") == "math"
    with recompute_ctx, pytest.raises(RecomputeMismatchError, match=r"'moe\.impl' where the forward chose"):
        recompute_stable("moe.impl", lambda: "padded")
    forward_ctx, recompute_ctx = choice_log_contexts()
    with forward_ctx:
        recompute_stable("a", lambda: 1)
    with recompute_ctx:
        assert recompute_stable("a", lambda: 2) == 1
        with pytest.raises(RecomputeMismatchError, match="made only 1"):
            recompute_stable("a", lambda: 3)
    assert recompute_stable("a", lambda: 4) == 4  # outside a checkpoint: just choose
