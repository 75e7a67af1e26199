"""Trainer benchmarks (alternating accord and its peer within one run; ratios are what count).

1. ``train_step_deepspeed_zero{1,0}_vs_torch``: one optimizer step of the same model on the
   same packed batch through the DeepSpeed engine (fp32 on CPU, Muon + AdamW, grad clipping,
   LR schedule) vs a bare PyTorch loop (same optimizer class and schedule,
   ``clip_grad_norm_``). Goal >= 0.9x. ZeRO 0 follows the bare loop's loss path exactly; ZeRO 1
   differs slightly because DeepSpeed orthogonalises Muon updates inside its partitions.
2. ``loader_vs_trainer_demand``: packed micro-batches per second the data loader produces
   (shard read, selection, transcript sampling, sequence building, packing) vs how many the
   trainer consumes per second. Goal >= 10x.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _shards(tmp: Path, quick: bool) -> Path:
    from accord.train.synthetic import write_synthetic_shards

    return write_synthetic_shards(tmp / "shards", n_clips=48 if quick else 160, n_shards=4, frames=(60, 240))


def run(quick: bool, device: str = "cpu") -> list[dict]:
    if device != "cpu":  # DeepSpeed's CPU engine and the CPU loader; no CUDA rows
        return []
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    torch.set_num_threads(2)
    from accord.model.config import get_flavour
    from accord.model.zonos import ZonosModel
    from accord.train.data import LoaderConfig, StageLoader
    from accord.train.engine import build_engine, build_optimizer, build_scheduler, init_distributed
    from accord.train.examples import ExampleBuilder
    from accord.train.loss import training_loss
    from accord.train.recipe import load_recipe

    flavour = "debug" if quick else "small"
    recipe = load_recipe("pretrain", debug=True)
    recipe.data.max_frames = 1024
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        root = _shards(Path(d), quick)
        cfg = get_flavour(flavour)
        loader_cfg = LoaderConfig(
            root=str(root),
            stage="pretrain",
            max_frames=recipe.data.max_frames,
            audio_pad_id=cfg.audio_pad_id,
            text_pad_id=cfg.text_pad_id,
        )
        builder = ExampleBuilder(recipe.conditioning)
        (batch,) = StageLoader(loader_cfg, builder).step_batches(1)

        info = init_distributed()
        bare_model = ZonosModel(cfg)
        bare_opt = build_optimizer(bare_model, recipe.optim)
        bare_sched = build_scheduler(bare_opt, 10**6, recipe.optim)  # same LR path as the engine

        def ds_stepper(zero_stage: int):
            torch.manual_seed(0)
            model = ZonosModel(cfg)
            model.load_state_dict(bare_model.state_dict())
            recipe.engine.zero_stage = zero_stage
            engine, *_ = build_engine(model, recipe.engine, recipe.optim, 10**6, info)

            def step() -> None:
                out = engine(batch.ids_BTC, doc_ids_BT=batch.doc_ids_BT)
                lo = training_loss(out.logits_BTKV, batch.ids_BTC, batch.mask_BTK, out.balance_loss, 0.01)
                engine.backward(lo.loss)
                engine.step()

            return step

        def bare_step() -> None:
            out = bare_model(batch.ids_BTC, doc_ids_BT=batch.doc_ids_BT)
            lo = training_loss(out.logits_BTKV, batch.ids_BTC, batch.mask_BTK, out.balance_loss, 0.01)
            lo.loss.backward()
            torch.nn.utils.clip_grad_norm_(bare_model.parameters(), recipe.optim.grad_clip)
            bare_opt.step()
            bare_sched.step()
            bare_opt.zero_grad(set_to_none=True)

        steps = {"zero1": ds_stepper(1), "zero0": ds_stepper(0), "bare": bare_step}
        for f in steps.values():
            f()  # warm up
        rounds, per = (4, 2)
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(rounds):  # alternate so machine drift hits every variant alike
            for k, f in steps.items():
                t = time.perf_counter()
                for _ in range(per):
                    f()
                times[k].append((time.perf_counter() - t) / per)
        med = {k: statistics.median(v) for k, v in times.items()}
        bare_s = med["bare"]
        for k in ("zero1", "zero0"):
            rows.append(
                {
                    "name": f"train_step_deepspeed_{k}_vs_torch ({flavour}, {batch.n_frames} rows)",
                    "value": 1.0 / med[k],
                    "unit": "steps/s",
                    "baseline": 1.0 / bare_s,
                    "ratio": bare_s / med[k],
                    "goal": 0.9,
                    "note": "DeepSpeed engine (fp32, Muon+AdamW, clip 0.5) vs bare loop; same model/batch/LR",
                }
            )
        ds_s = med["zero1"]

        # loader throughput vs the trainer's demand (micro-batches per second)
        demand = 1.0 / ds_s
        loader = StageLoader(loader_cfg, builder)
        n = 8 if quick else 30
        t = time.perf_counter()
        clips = 0
        for _ in range(n):
            clips += sum(len(b.clip_ids) for b in loader.step_batches(1))
        produce = n / (time.perf_counter() - t)
        rows.append(
            {
                "name": "loader_vs_trainer_demand",
                "value": produce,
                "unit": "micro-batches/s",
                "baseline": demand,
                "ratio": produce / demand,
                "goal": 10.0,
                "note": f"{clips / n:.1f} clips per micro-batch; single loader thread, shards read whole",
            }
        )
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
