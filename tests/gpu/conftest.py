"""GPU tier fixtures: the device under test and the shapes, steps and precision it gets.

The tier runs on CUDA when it is available. Without CUDA it is skipped, unless
``ACCORD_GPU_TIER_DEVICE=cpu``: then the same tests run on the CPU in fp32 with the ``debug``
flavour and a few steps, which proves their logic on a machine without a GPU.
``ACCORD_GPU_TIER_DEVICE=cuda`` makes a missing GPU an error instead of a skip (the GPU
script sets it, so a broken CUDA install cannot pass as "all skipped").
``ACCORD_GPU_TIER_STEPS`` overrides the steps per training stage; ``ACCORD_GPU_TIER_REPORT``
names a directory for what the tier measured (``write_report``).

Shards, subprocess helpers and model helpers come from ``tests/train`` and ``tests/model``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ..model.conftest import random_ids  # noqa: F401  (re-exported for the tier's modules)
from ..train.conftest import kill_after_checkpoint, run_cli, train_env  # noqa: F401  (fixture re-registered)

DEVICE_ENV = "ACCORD_GPU_TIER_DEVICE"
STEPS_ENV = "ACCORD_GPU_TIER_STEPS"
REPORT_ENV = "ACCORD_GPU_TIER_REPORT"  # a directory: the tier's findings as JSON (scripts/gpu_run.sh)


@dataclass(frozen=True)
class Tier:
    """What the tier runs: on CUDA the ``small`` flavour in bf16, on the CPU a tiny fp32 run."""

    device: torch.device
    flavour: str
    dtype: torch.dtype  # training precision (DeepSpeed bf16 on CUDA)
    steps: int  # per stage
    max_frames: int  # rows per packed sequence
    grad_accum: int
    n_clips: int  # synthetic clips in the tier's shards

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def rtol(self, dtype: torch.dtype) -> float:
        """Relative tolerance of a result computed in ``dtype`` by two different kernels."""
        return {torch.float32: 1e-4 if not self.cuda else 2e-3, torch.bfloat16: 3e-2}[dtype]


def _tier() -> Tier:
    want = os.environ.get(DEVICE_ENV, "").strip().lower()
    if want not in ("", "cpu", "cuda"):
        raise ValueError(f"{DEVICE_ENV}={want!r}: expected cpu or cuda")
    steps = os.environ.get(STEPS_ENV)
    if want == "cpu" or (want == "" and not torch.cuda.is_available()):
        if want != "cpu":
            pytest.skip(f"GPU tier: no CUDA here (set {DEVICE_ENV}=cpu to run its logic on the CPU)")
        return Tier(torch.device("cpu"), "debug", torch.float32, int(steps or 6), 256, 1, 24)
    if not torch.cuda.is_available():
        raise RuntimeError(f"{DEVICE_ENV}=cuda but torch sees no CUDA device")
    return Tier(torch.device("cuda", 0), "small", torch.bfloat16, int(steps or 12), 2048, 2, 160)


def write_report(name: str, data: dict) -> None:
    """``$ACCORD_GPU_TIER_REPORT/<name>.json`` when that directory is set (findings, not verdicts)."""
    out = os.environ.get(REPORT_ENV)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.json").write_text(json.dumps(data, indent=2))


@pytest.fixture(scope="session")
def tier() -> Tier:
    return _tier()


@pytest.fixture(scope="session")
def tier_shards(tier: Tier, tmp_path_factory) -> Path:
    """Synthetic shards sized for the tier (accord.train.synthetic: learnable code patterns)."""
    from accord.train.synthetic import write_synthetic_shards

    frames = (60, 240) if tier.cuda else (20, 60)
    return write_synthetic_shards(tmp_path_factory.mktemp("tier_shards"), n_clips=tier.n_clips, frames=frames)


@pytest.fixture(scope="session")
def tier_env(tier: Tier, train_env: dict[str, str]) -> dict[str, str]:  # noqa: F811
    """Trainer subprocess environment: DeepSpeed on the tier's accelerator."""
    env = dict(train_env)
    env["DS_ACCELERATOR"] = "cuda" if tier.cuda else "cpu"
    env["PYTHONSAFEPATH"] = "1"  # the installed accord, not the checkout's folders (cwd)
    # train_env keeps TORCHDYNAMO_DISABLE: compiling per packed shape would not fit the tier's
    # time budget; scripts/gpu_run.sh's drill runs the trainer as users do (compile allowed)
    if tier.cuda:  # one process per GPU, and let it use the machine's cores
        for k in ("ACCORD_TRAIN_THREADS", "OMP_NUM_THREADS"):
            env.pop(k, None)
    return env


def tier_train_args(tier: Tier, shards: Path, zero_stage: int) -> list[str]:
    """``accord train`` flags of the tier: the full recipe with activation checkpointing on."""
    return ["--shards", str(shards), "--model", tier.flavour, "--recipe", "full", "--no-eval",
            "--set", "engine.activation_checkpointing=true", "--set", f"engine.zero_stage={zero_stage}",
            "--set", f"engine.grad_accum={tier.grad_accum}", "--set", f"data.max_frames={tier.max_frames}",
            "--set", "optim.warmup_steps=2", "--set", "log_every=1",
            "--set", f"ckpt_every={max(1, tier.steps // 2)}"]  # fmt: skip


@dataclass(frozen=True)
class Drill:
    """An uninterrupted pretrain run, and the same run killed mid-pretrain and resumed: alone, or
    as the first stage of the curriculum (which then runs the other three)."""

    reference: Path  # pretrain alone, never interrupted
    run: Path  # RUN/<stage>/ per stage run
    stages: tuple[str, ...]
    killed_at: str | None  # the checkpoint tag the kill happened after


@pytest.fixture(scope="session")
def curriculum_drill(tier: Tier, tier_shards: Path, tier_env: dict[str, str], tmp_path_factory):
    """``drill(zero_stage, curriculum) -> Drill``, run once per argument pair and shared by the
    tier's tests (the ZeRO 1 curriculum also feeds the export round trip)."""
    from accord.core.stages import STAGES

    done: dict[tuple[int, bool], Drill] = {}

    def drill(zero_stage: int, curriculum: bool) -> Drill:
        key = (zero_stage, curriculum)
        if key in done:
            return done[key]
        root = tmp_path_factory.mktemp(f"drill_zero{zero_stage}")
        args = tier_train_args(tier, tier_shards, zero_stage)
        timeout = 900
        steps = str(tier.steps)
        run_cli(["pretrain", "--run", str(root / "ref"), "--steps", steps, *args], tier_env, timeout)
        run = root / "run"
        if curriculum:
            cmd = ["curriculum", "--run", str(run), "--steps-per-stage", steps, *args]
        else:
            cmd = ["pretrain", "--run", str(run / "pretrain"), "--steps", steps, *args]
        ckpts = run / "pretrain" / "checkpoints"
        killed_at = kill_after_checkpoint(cmd, tier_env, ckpts, max(1, tier.steps // 2), timeout)
        run_cli(cmd, tier_env, timeout)
        done[key] = Drill(root / "ref", run, STAGES if curriculum else ("pretrain",), killed_at)
        return done[key]

    return drill
