"""The Trainer's phases one at a time on the debug model, in this process: setup and
``train_step``, ``checkpoint`` and a fresh Trainer's resume, ``export``, ``evaluate`` failing
without losing the weights, and ``run`` stopped by ``stop_after`` then resumed.
(``test_train_integration`` runs the same trainer through the CLI, killed and across processes.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from accord.model.checkpoint import load_state, load_zonos2, read_extra
from accord.train.checkpoint import clean_state_dict
from accord.train.trainer import StageArgs, Trainer

from .conftest import losses_of

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("trainer_process")]

RESULT_KEYS = {
    "stage", "steps", "world_size", "logged_losses", "frames_per_s", "train_seconds",
    "peak_memory_gib", "loader", "skipped_shards", "final", "seconds", "expert_parallel",
}  # fmt: skip


def stage_args(
    shards: Path, run_dir: Path, steps: int = 4, run_eval: bool = False, overrides: dict | None = None
) -> StageArgs:
    """Debug model and recipe; every step logged, no checkpoint unless ``overrides`` asks."""
    cadence = {"log_every": 1, "ckpt_every": 100, **(overrides or {})}
    return StageArgs(stage="pretrain", shards=str(shards), run_dir=run_dir, steps=steps, run_eval=run_eval,
                     overrides=cadence)  # fmt: skip


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in clean_state_dict(trainer.engine.module.state_dict()).items()}


def one_step(trainer: Trainer) -> float:
    trainer.train_step(trainer.loader.step_batches(trainer.recipe.engine.grad_accum))
    return trainer.log_metrics()["loss"]


def test_setup_then_train_steps_change_the_weights(synthetic_shards: Path, tmp_path: Path) -> None:
    trainer = Trainer(stage_args(synthetic_shards, tmp_path / "run"))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert trainer.step == 0 and config["model_flavour"] == "debug" and config["stage"] == "pretrain"
    before = weights(trainer)
    for _ in range(2):
        trainer.train_step(trainer.loader.step_batches(1))
    row = trainer.log_metrics()  # the window's one host read covers both steps
    assert trainer.step == 2 and row["steps_in_window"] == 2 and math.isfinite(row["loss"]), row
    after = weights(trainer)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trained = {"multi_output.weight", "layers.0.attention.wq.weight", "layers.1.feed_forward.experts.w13"}
    assert trained <= changed, sorted(changed)
    assert not any(k.startswith("speaker_lda_projection") for k in changed)  # the fixed LDA
    assert all(p.device.type == trainer.device.type for p in trainer.engine.module.parameters())


def test_checkpoint_then_a_fresh_trainer_resumes_exactly(synthetic_shards: Path, tmp_path: Path) -> None:
    args = stage_args(synthetic_shards, tmp_path / "run")
    a = Trainer(args)
    one_step(a), one_step(a)
    assert a.checkpoint() == "step_00000002"
    saved, position = weights(a), a.loader.state_dict()
    ahead = [one_step(a), one_step(a)]  # step 4's loss depends on the optimizer state too

    b = Trainer(args)
    assert b.step == 2 and b.loader.state_dict() == position
    resumed = weights(b)
    assert all(torch.equal(resumed[k], saved[k]) for k in saved)
    assert [one_step(b), one_step(b)] == ahead  # bit-identical on the CPU


def test_export_writes_the_trained_weights_in_the_zonos2_layout(
    synthetic_shards: Path, tmp_path: Path
) -> None:
    ac = {"engine": {"activation_checkpointing": True}}  # wrapper prefixes must not reach final/
    trainer = Trainer(stage_args(synthetic_shards, tmp_path / "run", overrides=ac))
    one_step(trainer)
    final = trainer.export()
    assert final == tmp_path / "run" / "final"
    assert (final / "params.json").is_file() and (final / "model.pth").is_file()
    assert read_extra(final)["steps"] == 1
    trained, exported = weights(trainer), load_state(final)
    assert exported.keys() <= trained.keys() and all(torch.equal(exported[k], trained[k]) for k in exported)
    load_zonos2(final)


def test_a_failing_eval_keeps_the_weights(synthetic_shards: Path, tmp_path: Path) -> None:
    """The evaluator the trainer is given fails (a codec that does not load): the stage's
    weights are still exported and the failure is recorded, not raised."""
    run = tmp_path / "run"
    missing = str(tmp_path / "no-such-codec.pth")

    def failing_eval(final_dir, shards, recipe, device):
        raise FileNotFoundError(f"codec weights not found: {missing}")

    args = stage_args(synthetic_shards, run, steps=1, run_eval=True)
    result = Trainer(args, evaluator=failing_eval).run()
    assert "no-such-codec" in result["eval"]["error"], result["eval"]
    assert json.loads((run / "eval.json").read_text()) == result["eval"]
    assert json.loads((run / "result.json").read_text())["eval"] == result["eval"]
    load_zonos2(run / "final")


def test_run_stopped_after_a_checkpoint_resumes_to_the_uninterrupted_losses(
    synthetic_shards: Path, tmp_path: Path
) -> None:
    full = Trainer(stage_args(synthetic_shards, tmp_path / "full", steps=3)).run()
    assert set(full) == RESULT_KEYS and full["steps"] == 3
    assert json.loads((tmp_path / "full" / "result.json").read_text()).keys() == RESULT_KEYS

    part = tmp_path / "part"
    args = stage_args(synthetic_shards, part, steps=3, overrides={"ckpt_every": 2})
    args.stop_after = 2
    assert Trainer(args).run() == {"stage": "pretrain", "steps": 2, "stopped": True}
    assert not (part / "result.json").exists() and not (part / "final").exists()
    args.stop_after = None
    resumed = Trainer(args).run()
    assert list(resumed["logged_losses"]) == [3]  # this process's steps
    assert losses_of(part) == losses_of(tmp_path / "full") == list(full["logged_losses"].values())
    assert (part / "final" / "params.json").is_file()
