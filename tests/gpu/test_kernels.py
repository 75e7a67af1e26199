"""Every MoE kernel equals the per-expert loop, and every attention backend equals the reference
on packed documents: forward and gradients, on the tier's device and dtypes.

Both lists are read from the modules (``accord.model.moe.IMPLS``,
``accord.model.kernels.BACKENDS``), so a kernel added there is covered here.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from accord.model.config import get_flavour
from accord.model.kernels import BACKENDS
from accord.model.moe import IMPLS, GroupedExperts, grouped_mm_supported
from accord.model.zonos import ZonosModel

from .conftest import random_ids

pytestmark = pytest.mark.gpu

DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])


def _grads(module: torch.nn.Module, out: torch.Tensor, *inputs: torch.Tensor) -> list[torch.Tensor]:
    g = torch.Generator(device=out.device).manual_seed(1)
    out.backward(torch.randn(out.shape, generator=g, device=out.device, dtype=out.dtype))
    params = [p.grad.float() for p in module.parameters() if p.grad is not None]
    return [t.grad.float() for t in inputs] + params


def _skip_unless_runs(tier, dtype: torch.dtype) -> None:
    if dtype == torch.bfloat16 and not tier.cuda:
        pytest.skip("bf16 kernels are the CUDA path")


@DTYPES
@pytest.mark.parametrize("impl", [i for i in IMPLS if i != "loop"])
def test_moe_kernel_equals_the_loop(tier, impl: str, dtype: torch.dtype) -> None:
    _skip_unless_runs(tier, dtype)
    if impl == "grouped_mm" and not grouped_mm_supported(tier.device.type, dtype):
        pytest.skip(f"torch._grouped_mm has no {dtype} kernel on this {tier.device.type}")
    E, D, I, N, K = 8, 64, 128, 300, 2
    torch.manual_seed(0)
    ex = GroupedExperts(D, I, E)
    ex.reset_parameters()
    ex.to(tier.device, dtype)
    x = torch.randn(N, D, device=tier.device, dtype=dtype)
    # skewed routing with empty experts: expert 0 takes most slots, 5 and 6 none
    choice = torch.tensor([0, 0, 0, 0, 1, 2, 3, 4, 7], device=tier.device)
    experts_NK = choice[torch.randint(0, len(choice), (N, K), device=tier.device)]
    weights_NK = torch.rand(N, K, device=tier.device, dtype=dtype)
    results = []
    for which in ("loop", impl):
        ex.impl = which
        ex.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        y = ex(xi, experts_NK, weights_NK)
        results.append([y.detach().float(), *_grads(ex, y, xi)])
    tol = tier.rtol(dtype) * (3 if dtype == torch.bfloat16 else 1)
    for ref, got in zip(*results, strict=True):
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)


def _packed_docs(B: int, T: int, device: torch.device) -> torch.Tensor:
    """Rows of uneven documents, the last row ending in padding (doc id -1), as the collator packs."""
    doc = torch.full((B, T), -1, dtype=torch.long)
    cuts = [[0, 5, 23, 24, T], [0, T - 9]]
    for b in range(B):
        c = cuts[b % len(cuts)]
        for d, (lo, hi) in enumerate(itertools.pairwise(c)):
            doc[b, lo:hi] = d
    return doc.to(device)


@DTYPES
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
def test_attention_backend_equals_reference_with_packed_documents(tier, backend: str, dtype) -> None:
    _skip_unless_runs(tier, dtype)
    cfg = get_flavour(tier.flavour)
    torch.manual_seed(0)
    model = ZonosModel(cfg).to(tier.device, dtype)
    ids = random_ids(cfg, 2, 96 if tier.cuda else 40).to(tier.device)
    doc = _packed_docs(2, ids.shape[1], tier.device)
    model.set_moe_impl("loop")  # the MoE kernels have their own test: isolate attention
    # torch 2.11's FlexAttention has no CPU backward: there (the CPU rehearsal) forward only
    grads = tier.cuda or backend != "flex"
    results = []
    for which in ("reference", backend):
        model.set_attention_backend(which)
        model.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(grads):
            logits = model(ids, doc_ids_BT=doc).logits_BTKV
        results.append([logits.detach().float(), *(_grads(model, logits) if grads else [])])
    tol = tier.rtol(dtype) * (3 if dtype == torch.bfloat16 else 1)
    for ref, got in zip(*results, strict=True):
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol * 10)
