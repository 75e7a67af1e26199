"""``Trainer.train_step`` queues device work only: under ``torch.cuda.set_sync_debug_mode("warn")``
no synchronising call comes from accord's trainer code between two logged steps (the model and
DeepSpeed are reported, not judged here: the MoE's padding size and DeepSpeed's clipping read
the device by design). On the CPU the same script runs the steps; there is nothing to sync."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from .conftest import write_report

pytestmark = pytest.mark.gpu

SCRIPT = r"""
import json, sys, warnings, torch
from accord.train.trainer import StageArgs, Trainer

p = json.loads(sys.argv[1])
overrides = {"engine": {"grad_accum": p["grad_accum"], "activation_checkpointing": True},
             "data": {"max_frames": p["max_frames"]}}
trainer = Trainer(StageArgs(stage="pretrain", shards=p["shards"], run_dir=p["run_dir"], model=p["flavour"],
                            debug_recipe=False, run_eval=False, overrides=overrides))
grad_accum = trainer.recipe.engine.grad_accum
# warm-up step: kernel probes, allocator pools, kernel plans
trainer.train_step(trainer.loader.step_batches(grad_accum))
steps = [trainer.loader.step_batches(grad_accum) for _ in range(p["steps"])]
cuda = trainer.device.type == "cuda"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
    try:
        for batches in steps:
            trainer.train_step(batches)
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
row = trainer.log_metrics()  # the window's one sync, outside the watched steps
syncs = [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
print(json.dumps({"syncs": syncs, "loss": row["loss"], "device": str(trainer.device)}))
"""


def test_train_step_adds_no_host_sync(tier, tier_shards, tier_env, tmp_path: Path) -> None:
    import accord.train.trainer

    params = dict(shards=str(tier_shards), run_dir=str(tmp_path / "run"), flavour=tier.flavour,
                  max_frames=tier.max_frames, grad_accum=tier.grad_accum, steps=3)  # fmt: skip
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(params)], env=tier_env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["device"].startswith(tier.device.type) and math.isfinite(r["loss"]), r
    per_site = Counter(r["syncs"])
    write_report("step_syncs", {"per_3_steps": dict(per_site.most_common())})
    trainer = Path(accord.train.trainer.__file__).resolve().parent
    ours = [s for s in per_site if Path(s.rsplit(":", 1)[0]).resolve().parent == trainer]
    assert not ours, f"host syncs from the trainer's own code: {ours}"
