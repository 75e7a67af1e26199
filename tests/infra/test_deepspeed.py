"""Per-stage DeepSpeed configs load through DeepSpeed's own config parser (pydantic-validated)."""

from __future__ import annotations

import json

import pytest

from accord.core.stages import STAGES

from ._infra import INFRA

KNOWN_TOP_LEVEL = {
    "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size", "gradient_clipping",
    "bf16", "fp16", "zero_optimization", "zero_allow_untested_optimizer", "data_types", "steps_per_print",
    "wall_clock_breakdown", "activation_checkpointing", "communication_data_type", "prescale_gradients",
}  # fmt: skip


def _config(stage: str) -> dict:
    return json.loads((INFRA / "deepspeed" / f"{stage}.json").read_text())


def test_one_config_per_stage() -> None:
    assert sorted(p.stem for p in (INFRA / "deepspeed").glob("*.json")) == sorted(STAGES)


@pytest.mark.parametrize("stage", STAGES)
def test_stage_config_loads_in_deepspeed(stage, monkeypatch) -> None:
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    from deepspeed.runtime.config import DeepSpeedConfig

    raw = _config(stage)
    assert set(raw) <= KNOWN_TOP_LEVEL, set(raw) - KNOWN_TOP_LEVEL
    # The optimizer (Muon + AdamW groups) and the schedule are built in code, per the stage recipe.
    assert "optimizer" not in raw and "scheduler" not in raw
    cfg = DeepSpeedConfig(raw)
    assert cfg.gradient_clipping == 0.5
    assert cfg.bfloat16_config.enabled
    assert cfg.zero_optimization_stage in (1, 2)
    assert cfg.gradient_accumulation_steps >= 1
    assert cfg.train_batch_size == cfg.train_micro_batch_size_per_gpu * cfg.gradient_accumulation_steps
    assert cfg.zero_allow_untested_optimizer, "a client optimizer (Muon) needs this under ZeRO"


def test_deepspeed_rejects_a_bad_zero_section(monkeypatch) -> None:
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    from deepspeed.runtime.config import DeepSpeedConfig

    raw = _config("pretrain")
    raw["zero_optimization"]["stagee"] = 2
    with pytest.raises(ValueError):  # pydantic.ValidationError is a ValueError
        DeepSpeedConfig(raw)
