"""The trainer's step queues device work only: under ``torch.cuda.set_sync_debug_mode("warn")``
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
from accord.model.config import get_flavour
from accord.model.zonos import ZonosModel
from accord.train.data import LoaderConfig, StageLoader
from accord.train.engine import apply_activation_checkpointing, build_engine, init_distributed
from accord.train.examples import ExampleBuilder
from accord.train.recipe import load_recipe
from accord.train.stage import train_step
from accord.train.step_metrics import StepMetrics

p = json.loads(sys.argv[1])
recipe = load_recipe("pretrain")
eng = recipe.engine
eng.grad_accum = p["grad_accum"]
cfg = get_flavour(p["flavour"])
loader = StageLoader(
    LoaderConfig(root=p["shards"], stage="pretrain", max_frames=p["max_frames"],
                 audio_pad_id=cfg.audio_pad_id, text_pad_id=cfg.text_pad_id),
    ExampleBuilder(recipe.conditioning),
)
info = init_distributed()
torch.manual_seed(0)
model = ZonosModel(cfg)
apply_activation_checkpointing(model)
model.to(info.device)
engine, *_ = build_engine(model, eng, recipe.optim, 100, info)
metrics = StepMetrics(cfg.n_codebooks, info.device)
# warm-up step: kernel probes, allocator pools, kernel plans
train_step(engine, loader.step_batches(eng.grad_accum), info.device, eng.balance_coef, metrics)
steps = [loader.step_batches(eng.grad_accum) for _ in range(p["steps"])]
cuda = info.device.type == "cuda"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
    try:
        for batches in steps:
            train_step(engine, batches, info.device, eng.balance_coef, metrics)
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
row = metrics.flush()  # the window's one sync, outside the watched steps
syncs = [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
print(json.dumps({"syncs": syncs, "loss": row["loss"], "device": str(info.device)}))
"""


def test_train_step_adds_no_host_sync(tier, tier_shards, tier_env) -> None:
    import accord.train.stage

    params = dict(shards=str(tier_shards), flavour=tier.flavour, max_frames=tier.max_frames,
                  grad_accum=tier.grad_accum, steps=3)  # fmt: skip
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(params)], env=tier_env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["device"].startswith(tier.device.type) and math.isfinite(r["loss"]), r
    per_site = Counter(r["syncs"])
    write_report("step_syncs", {"per_3_steps": dict(per_site.most_common())})
    trainer = Path(accord.train.stage.__file__).resolve().parent
    ours = [s for s in per_site if Path(s.rsplit(":", 1)[0]).resolve().parent == trainer]
    assert not ours, f"host syncs from the trainer's own code: {ours}"
