"""StepMetrics: sums stay on the training device, one host read per flush, no device mixing.

The ``meta`` device stands in for a GPU on this CPU-only machine: a meta tensor has no data,
so any host read (``float``, ``.item()``, ``.cpu()``, ``.tolist()``) raises, and so does any
op mixing it with a non-scalar CPU tensor, the two bug classes that broke ``run_stage`` at
its first CUDA step.
"""

from __future__ import annotations

import math

import pytest
import torch

from accord.train.loss import LossOut, training_loss
from accord.train.step_metrics import StepMetrics

K, V = 3, 11


def _micro_batch(device: str, seed: int, empty_codebook: int | None = None):
    """A real LossOut (training_loss on random logits) and router counts, on ``device``."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 6, K, V, generator=g)
    ids = torch.randint(0, V, (2, 6, K + 1), generator=g)
    mask = torch.rand(2, 6, K, generator=g) > 0.3
    if empty_codebook is not None:
        mask[..., empty_codebook] = False
    counts = {1: torch.randint(0, 9, (4,), generator=g), 2: torch.randint(0, 9, (4,), generator=g)}
    mv = lambda t: t.to(device)  # noqa: E731
    lo = training_loss(mv(logits), mv(ids), mv(mask), mv(torch.tensor(0.25)), 0.01)
    return lo, {k: mv(v) for k, v in counts.items()}, int(mask.any(-1).sum())


def test_accumulates_on_meta_without_reading_the_device() -> None:
    m = StepMetrics(K, "meta")
    for step in range(3):
        for j in range(4):
            lo, counts, frames = _micro_batch("meta", 10 * step + j, empty_codebook=j % 2)
            m.add(lo, counts, frames)
        m.end_step()
    assert m.micro_batches == 12 and m.steps == 3
    with pytest.raises((RuntimeError, NotImplementedError)):  # flush is the one place that reads
        m.flush()


@pytest.mark.parametrize("wrong", ["loss", "n_tokens_K"])
def test_refuses_a_tensor_on_another_device(wrong: str) -> None:
    lo, counts, frames = _micro_batch("meta", 0)
    cpu = getattr(lo, wrong).new_ones(getattr(lo, wrong).shape, device="cpu")
    fields = {**vars(lo), wrong: cpu}
    with pytest.raises(ValueError, match=f"got {wrong} on cpu"):
        StepMetrics(K, "meta").add(LossOut(**fields), counts, frames)
    with pytest.raises(ValueError, match="router counts"):
        StepMetrics(K, "meta").add(lo, {1: counts[1].new_ones(4, device="cpu")}, frames)


def test_flush_row_equals_the_per_micro_batch_arithmetic() -> None:
    m = StepMetrics(K, "cpu")
    parts = [_micro_batch("cpu", s, empty_codebook=0 if s == 1 else None) for s in range(3)]
    for lo, counts, frames in parts:
        m.add(lo, counts, frames)
    m.end_step()
    row = m.flush()
    los = [p[0] for p in parts]
    assert row["loss"] == pytest.approx(sum(float(lo.loss) for lo in los) / 3)
    assert row["nll"] == pytest.approx(sum(float(lo.nll) for lo in los) / 3)
    assert row["balance"] == pytest.approx(0.25)
    for k in range(K):  # token-weighted over micro-batches; codebook 0 had no target in one of them
        n = sum(float(lo.n_tokens_K[k]) for lo in los)
        s = sum(float(lo.nll_K[k] * lo.n_tokens_K[k]) for lo in los if lo.n_tokens_K[k] > 0)
        assert row[f"nll/cb{k}"] == pytest.approx(s / n)
    assert math.isnan(float(los[1].nll_K[0]))
    layer1 = sum(p[1][1] for p in parts).double()
    for e in range(4):
        assert row[f"experts/layer1/e{e}"] == pytest.approx(float(layer1[e] / layer1.sum()))
    assert row["frames"] == sum(p[2] for p in parts) and row["steps_in_window"] == 1
    assert row["tokens_per_s"] > 0
    assert m.micro_batches == 0 and m.frames == 0  # a flush starts the next window
    with pytest.raises(RuntimeError, match="no micro-batch"):
        m.flush()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_accumulation_never_synchronises() -> None:
    m = StepMetrics(K, "cuda")
    batches = [_micro_batch("cuda", s) for s in range(4)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for lo, counts, frames in batches:
            m.add(lo, counts, frames)
        m.end_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert math.isfinite(m.flush()["loss"])
