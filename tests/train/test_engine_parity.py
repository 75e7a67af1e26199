"""The DeepSpeed engine at ZeRO 0 in one process is the bare PyTorch loop, step for step.

Runs in a subprocess: DeepSpeed initialises torch.distributed, which a test process should
not keep.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = r"""
import json, sys, torch
from accord.model.config import get_flavour
from accord.model.zonos import ZonosModel
from accord.train.data import LoaderConfig, StageLoader
from accord.train.engine import build_engine, build_optimizer, build_scheduler, init_distributed
from accord.train.examples import ExampleBuilder
from accord.train.loss import training_loss
from accord.train.recipe import load_recipe

torch.manual_seed(0)
recipe = load_recipe("pretrain", debug=True)
cfg = get_flavour("debug")
loader = StageLoader(
    LoaderConfig(root=sys.argv[1], stage="pretrain", max_frames=512,
                 audio_pad_id=cfg.audio_pad_id, text_pad_id=cfg.text_pad_id),
    ExampleBuilder(recipe.conditioning),
)
batches = loader.step_batches(3)
info = init_distributed()
bare = ZonosModel(cfg)
ds_model = ZonosModel(cfg)
ds_model.load_state_dict(bare.state_dict())
opt = build_optimizer(bare, recipe.optim)
sched = build_scheduler(opt, 100, recipe.optim)
recipe.engine.zero_stage = 0
engine, *_ = build_engine(ds_model, recipe.engine, recipe.optim, 100, info)

def loss(model, b):
    out = model(b.ids_BTC, doc_ids_BT=b.doc_ids_BT)
    return training_loss(out.logits_BTKV, b.ids_BTC, b.mask_BTK, out.balance_loss, 0.01).loss

bare_l, ds_l = [], []
for b in batches:
    lo = loss(bare, b)
    lo.backward()
    torch.nn.utils.clip_grad_norm_(bare.parameters(), recipe.optim.grad_clip)
    opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
    bare_l.append(lo.item())
    lo = loss(engine, b)
    engine.backward(lo)
    engine.step()
    ds_l.append(lo.item())
diff = max((p - q).abs().max().item() for p, q in zip(bare.parameters(), ds_model.parameters()))
print(json.dumps({"bare": bare_l, "ds": ds_l, "param_diff": diff,
                  "allreduce": engine.enable_backward_allreduce}))
"""


def test_zero0_engine_steps_like_the_bare_loop(synthetic_shards: Path, train_env) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(synthetic_shards)],
        env=train_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["allreduce"] is False  # one process: no self-all-reduce of every gradient
    assert len(r["bare"]) == 3 and r["bare"][0] == pytest.approx(r["ds"][0], abs=1e-6)
    assert r["ds"] == pytest.approx(r["bare"], abs=1e-4), r
    assert r["param_diff"] < 1e-4, r
