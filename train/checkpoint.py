"""Exact save/resume of a stage, and the ZONOS2-layout export of its final weights.

A checkpoint is DeepSpeed's (model, optimizer incl. ZeRO partitions, LR scheduler) under
``RUN/checkpoints/step_XXXXXXXX`` plus, per rank, ``trainer_rank{r}.pt``: the step, the data
loader position and every RNG state (python, numpy, torch, CUDA), and under expert
parallelism that rank's local experts. DeepSpeed writes the ``latest`` pointer only after
the tag is complete, so a crash mid-save resumes from the previous checkpoint. Restoring all
of it makes the resumed loss sequence identical to an uninterrupted run on CPU.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

TAG_PREFIX = "step_"


def tag_for(step: int) -> str:
    return f"{TAG_PREFIX}{step:08d}"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_tag(ckpt_dir: Path) -> str | None:
    f = ckpt_dir / "latest"
    if not f.exists():
        return None
    tag = f.read_text().strip()
    return tag if (ckpt_dir / tag).is_dir() else None


def save(
    engine: Any,
    ckpt_dir: Path,
    step: int,
    data_state: dict[str, Any],
    rank: int,
    extra: dict[str, Any] | None = None,
    local_experts: dict[str, torch.Tensor] | None = None,
    keep_last: int = 2,
) -> str:
    """Save everything needed to continue at ``step`` exactly; every rank must call it."""
    tag = tag_for(step)
    trainer_state = {
        "step": step,
        "data": data_state,
        "rng": rng_state(),
        "extra": extra or {},
        "local_experts": local_experts,
    }
    # our per-rank file first, then DeepSpeed's tag (which publishes ``latest`` last)
    (ckpt_dir / tag).mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / tag / f".trainer_rank{rank}.pt.tmp"
    torch.save(trainer_state, tmp)
    tmp.replace(ckpt_dir / tag / f"trainer_rank{rank}.pt")
    if local_experts is not None:  # expert parallel: our fused expert blocks, before `latest` moves
        from accord.train.parallel import save_expert_files

        save_expert_files(engine, str(ckpt_dir), tag)
        if dist.is_initialized():
            dist.barrier()
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": step})
    if dist.is_initialized():
        dist.barrier()
    if rank == 0 and keep_last > 0:
        tags = sorted(p.name for p in ckpt_dir.glob(f"{TAG_PREFIX}*") if p.is_dir())
        for old in tags[:-keep_last]:
            if old != tag:
                shutil.rmtree(ckpt_dir / old, ignore_errors=True)
    return tag


def load(engine: Any, ckpt_dir: Path, rank: int) -> dict[str, Any] | None:
    """Restore the latest checkpoint in ``ckpt_dir`` into ``engine``; returns the trainer state."""
    tag = latest_tag(ckpt_dir)
    if tag is None:
        return None
    path, _ = engine.load_checkpoint(str(ckpt_dir), tag=tag, load_module_strict=True)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load checkpoint {ckpt_dir / tag}")
    # on the host whatever device wrote it (RNG states must be CPU tensors; expert blocks are
    # copied into the live parameters, wherever those are)
    state = torch.load(ckpt_dir / tag / f"trainer_rank{rank}.pt", map_location="cpu", weights_only=False)
    if state.get("local_experts"):
        from accord.train.parallel import load_local_expert_state

        load_local_expert_state(engine.module, state["local_experts"])
    set_rng_state(state["rng"])
    log.info("resumed from %s at step %d", ckpt_dir / tag, state["step"])
    return state


# --- final weights ----------------------------------------------------------------------------


def clean_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop activation-checkpoint wrapper prefixes so keys equal ZONOS2's."""
    return {k.replace("_checkpoint_wrapped_module.", ""): v for k, v in sd.items()}


def export_zonos2(
    state_dict: dict[str, torch.Tensor], model_cfg: Any, out_dir: Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``state_dict`` (full, unsharded) as a ZONOS2 checkpoint dir via accord.model.checkpoint."""
    from accord.model.checkpoint import save_zonos2
    from accord.model.zonos import ZonosModel

    with torch.device("meta"):
        model = ZonosModel(model_cfg)
    model.load_state_dict(clean_state_dict(state_dict), strict=True, assign=True)
    return save_zonos2(model, out_dir, extra=extra)  # atomic: temp dir, then rename


def load_init_weights(model: nn.Module, init: Path) -> None:
    """Weights only from a previous stage's ZONOS2 export (optimizer, schedule, data fresh)."""
    from accord.model.checkpoint import load_zonos2

    src = load_zonos2(init)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    if missing or unexpected:
        raise ValueError(f"init checkpoint {init} does not match: missing={missing} unexpected={unexpected}")
