"""The DeepSpeed engine at ZeRO 0 in one process is the bare PyTorch loop, step for step.

The script lives in ``conftest.engine_parity``: the GPU tier runs it on CUDA, bf16 and with
activation checkpointing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import engine_parity

pytestmark = pytest.mark.integration


def test_zero0_engine_steps_like_the_bare_loop(synthetic_shards: Path, train_env) -> None:
    r = engine_parity(synthetic_shards, train_env, zero_stage=0)
    assert r["allreduce"] is False  # one process: no self-all-reduce of every gradient
    assert len(r["bare"]) == 3 and r["bare"][0] == pytest.approx(r["ds"][0], abs=1e-6)
    assert r["ds"] == pytest.approx(r["bare"], abs=1e-4), r
    assert r["param_diff"] < 1e-4, r
