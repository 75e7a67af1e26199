"""Training with activation checkpointing on, killed mid-stage and resumed: pretrain at ZeRO 0, the
four-stage curriculum at ZeRO 1. Finite, falling losses; the resumed stage retraces an
uninterrupted one."""

from __future__ import annotations

import json
import math

import pytest

from accord.train.metrics import read_metrics

from ..train.conftest import falls, losses_of

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize(
    ("zero_stage", "curriculum"), [(0, False), (1, True)], ids=["zero0-pretrain", "zero1-curriculum"]
)
def test_training_resumes_after_a_kill(tier, curriculum_drill, zero_stage: int, curriculum: bool) -> None:
    d = curriculum_drill(zero_stage, curriculum)
    assert d.killed_at is not None and d.killed_at < f"step_{tier.steps:08d}", "the kill came too late"
    first_loss = None
    for stage in d.stages:
        sd = d.run / stage
        cfg = json.loads((sd / "config.json").read_text())
        assert cfg["recipe"]["engine"]["activation_checkpointing"] is True
        assert cfg["deepspeed"]["zero_optimization"]["stage"] == zero_stage
        assert cfg["deepspeed"]["bf16"]["enabled"] is tier.cuda
        losses = losses_of(sd)
        assert len(losses) == tier.steps and all(math.isfinite(x) for x in losses), (stage, losses)
        first_loss = losses[0] if first_loss is None else first_loss
        assert losses[-1] < first_loss, (stage, losses)  # below where the curriculum started
        result = json.loads((sd / "result.json").read_text())
        assert result["steps"] == tier.steps and result["frames_per_s"] > 0
    assert falls(losses_of(d.run / "pretrain"), margin=0.01)  # few steps at the recipe's LR

    # the killed-and-resumed pretrain retraces the uninterrupted one
    ref, got = losses_of(d.reference), losses_of(d.run / "pretrain")
    if tier.cuda:  # bf16 kernels may round differently after a restart
        assert got == pytest.approx(ref, rel=tier.rtol(tier.dtype)), (ref, got)
    else:
        assert got == ref
    rows = read_metrics(d.run / "pretrain")
    if zero_stage or tier.cuda:  # DeepSpeed keeps no norm for fp32 ZeRO 0 (it clips in place)
        assert all(r["grad_norm"] is not None and math.isfinite(r["grad_norm"]) for r in rows)
