"""Trainer benchmarks (alternating accord and its peer within one run; ratios are what count).

1. ``train_step_deepspeed_zero{1,0}_vs_torch``: one optimizer step of the same model on the
   same packed batch through the DeepSpeed engine (fp32 on CPU, Muon + AdamW, grad clipping,
   LR schedule) vs a bare PyTorch loop (same optimizer class and schedule,
   ``clip_grad_norm_``). Goal >= 0.9x. ZeRO 0 follows the bare loop's loss path exactly; ZeRO 1
   differs slightly because DeepSpeed orthogonalises Muon updates inside its partitions.
2. ``loader_vs_trainer_demand``: packed micro-batches per second the data loader produces
   (shard read, selection, transcript sampling, sequence building, packing) vs how many the
   trainer consumes per second. Goal >= 10x.
3. ``loader_data_wait_slow_storage``: the time the training step waits on data over the same
   steps, with the loader's prefetch thread vs inline, side by side in one run, on storage made
   slow on purpose (``bench.slow_storage``: 100 ms per open, 10 MB/s) and a simulated 100 ms
   device step (a sleep: the host is free, as while a GPU computes). The first step's wait
   (nothing can be read ahead of it) is reported apart.
4. ``loader_peak_memory_1024mb_shard``: the loader's resident memory growth (subprocess, the
   largest resident size sampled after each step minus the size before the loader started; the
   process's max RSS is set by its imports and would read 0) streaming a 1 GB shard (256 MB
   with ``--quick``) into its third shuffle window of 32 MB, against the stated bound
   (``accord.train.stream.memory_bound``: the window, the queued micro-batches, one read block,
   the stage selection: two shards' clip weights plus the start-up pass's batch, a per-shard
   term, and a fixed term for code paged in on first use), printed term by term with the growth
   split into the selection's start-up pass and streaming (which holds the shard's weights).
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
                "note": f"{clips / n:.1f} clips per micro-batch; inline loader, shards streamed",
            }
        )
        rows.append(data_wait_row(Path(d), recipe, quick))
    rows.append(memory_row(quick))
    return rows


def data_wait_row(tmp: Path, recipe, quick: bool, step_s: float = 0.1) -> dict:
    """Data wait per step on slow storage, prefetch vs inline (see the module docstring)."""
    from accord.train.data import LoaderConfig, StageLoader
    from accord.train.examples import ExampleBuilder
    from accord.train.synthetic import write_synthetic_shards
    from bench.slow_storage import slow_url

    root = write_synthetic_shards(tmp / "slow_shards", n_clips=64, n_shards=8, frames=(200, 400))
    url = slow_url(str(root), latency_s=0.1, mb_per_s=10.0)
    steps = 20 if quick else 40
    waits: dict[int, list[float]] = {}
    for prefetch in (0, 4):
        cfg = LoaderConfig(root=url, stage="pretrain", max_frames=1024, prefetch=prefetch)
        ld = StageLoader(cfg, ExampleBuilder(recipe.conditioning))
        per_step = []
        for _ in range(steps):
            before = ld.io_stats()["data_wait_s"]
            ld.step_batches(1)
            per_step.append(ld.io_stats()["data_wait_s"] - before)
            time.sleep(step_s)  # the device step: the host is idle, the prefetch thread reads
        ld.close()
        waits[prefetch] = per_step
    inline, ahead = sum(waits[0][1:]), sum(waits[4][1:])
    return {
        "name": "loader_data_wait_slow_storage (prefetch 4 vs inline)",
        "value": ahead,
        "unit": f"s waited over steps 2..{steps}",
        "baseline": inline,
        "ratio": inline / max(ahead, 1e-3),
        "goal": 10.0,
        "note": (
            f"slow storage: 100 ms per open + 10 MB/s; {step_s * 1e3:.0f} ms device step; "
            f"first step {waits[4][0]:.2f} s with prefetch / {waits[0][0]:.2f} s inline; "
            f"max per-step wait {max(waits[4][1:]):.3f} s with prefetch, {max(waits[0][1:]):.3f} s inline"
        ),
    }


MEMORY_SCRIPT = r"""
import json, os, sys
from accord.train.data import LoaderConfig, StageLoader
from accord.train.examples import ExampleBuilder
from accord.train.recipe import load_recipe
root, window_mb, clips_needed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
r = load_recipe("pretrain", debug=True)
cfg = LoaderConfig(root=root, stage="pretrain", max_frames=6144, prefetch=4, shuffle_window_mb=window_mb)
builder = ExampleBuilder(r.conditioning)
def rss():  # resident now (the process's max RSS is already set by the imports: it cannot show growth)
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = peak = rss()  # before the loader starts its thread
ld = StageLoader(cfg, builder)
selected = rss()  # the stage selection's start-up pass (a shard's weights are read when opened)
clips = 0
while clips < clips_needed:
    clips += sum(len(b.clip_ids) for b in ld.step_batches(1))
    peak = max(peak, rss())
ld.close()
print(json.dumps({
    "grown": peak - before, "selection": selected - before, "gauge_peak": ld.io_stats()["peak_loader_bytes"],
    "clips": clips, "rows": ld.selection.n_candidates, "prefetch": cfg.prefetch,
    "shard_rows": max(int(r["n_samples"]) for r in ld.selection.index_rows.values()),
    "n_shards": len(ld.selection.index_rows),
    "seqs_per_batch": cfg.seqs_per_batch, "max_frames": cfg.max_frames,
}))
"""


def write_big_shard(root: Path, n_bytes: int, frames: int = 4000) -> int:
    """One shard of about ``n_bytes`` (clips of ``frames`` code frames), written sample by sample
    with tokenize's writer (never all in memory); returns its sample count."""
    import numpy as np

    from accord.core.eligibility import StageThresholds, threshold_overrides
    from accord.core.shards import ShardWriter, write_index, write_tokenize_json
    from accord.train.synthetic import STAGE_AGREEMENT, clip_sample

    rng = np.random.default_rng(0)
    templates = [clip_sample(i, rng, frames) for i in range(16)]  # cycled under new clip ids
    per = templates[0].codes.nbytes + 5 * 192 * 4 + 6 * 1024
    n = max(1, n_bytes // per)
    w = ShardWriter(str(root), 0, [f"clip{i:06d}" for i in range(n)])
    for i in range(n):
        s = templates[i % len(templates)]
        s.meta["clip_id"] = s.key = f"clip{i:06d}"
        w.add(s)
    w.close()
    write_index(str(root), 1)
    thresholds = {s: StageThresholds(min_agreement=a) for s, a in STAGE_AGREEMENT.items()}
    write_tokenize_json(str(root), {"eligibility": threshold_overrides(thresholds)})
    return n


def memory_row(quick: bool, window_mb: float = 32.0) -> dict:
    """Peak loader memory streaming one big shard (see the module docstring)."""
    import json
    import subprocess

    size = (256 if quick else 1024) * 2**20
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        n = write_big_shard(Path(d), size)
        write_s = time.perf_counter() - t
        per_window = int(window_mb * 2**20 / (size / n))
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, d, str(window_mb), str(min(n, 2 * per_window + 1))],
            capture_output=True, text=True, timeout=1200, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        m = json.loads(out.stdout.strip().splitlines()[-1])
    from accord.core.shards import READ_BLOCK_BYTES
    from accord.train.stream import memory_bound

    k = 9  # the synthetic clips' codebooks: ids int64 [B, T, K+1], mask bool [B, T, K], doc ids int64
    batch_bytes = m["seqs_per_batch"] * m["max_frames"] * (8 * (k + 1) + k + 8) + 4096  # + speaker rows
    # queued micro-batches: the prefetch queue, one blocked in its put, one being packed, the trainer's
    window, queued = int(window_mb * 2**20), m["prefetch"] + 3
    b = memory_bound(window, queued, batch_bytes, m["shard_rows"], READ_BLOCK_BYTES, m["n_shards"])
    mib = lambda x: f"{x / 2**20:.0f}"  # noqa: E731
    return {
        "name": f"loader_peak_memory_{size // 2**20}mb_shard",
        "value": m["grown"] / 2**20,
        "unit": "MiB RSS growth (sampled per step)",
        "baseline": b["total"] / 2**20,
        "ratio": b["total"] / max(m["grown"], 1),
        "goal": 1.0,
        "pass": m["grown"] <= b["total"],
        "note": (
            f"{n} clips in one {size / 2**30:.2f} GB shard, {m['clips']} streamed through {window_mb:.0f} MB "
            f"shuffle windows, prefetch {m['prefetch']} (max_frames {m['max_frames']}, one clip a "
            f"micro-batch); grown {mib(m['grown'])} MiB = selection pass {mib(m['selection'])} + streaming "
            f"{mib(m['grown'] - m['selection'])}; accounted peak {mib(m['gauge_peak'])} MiB; bound "
            f"{mib(b['total'])} MiB = {' + '.join(f'{t} {mib(v)}' for t, v in b.items() if t != 'total')} "
            f"(train.stream.memory_bound: the selection term follows the largest shard, not the "
            f"corpus; the old loader held the shard's bytes and its decoded samples: > 2x the "
            f"shard); shard written in {write_s:.0f} s"
        ),
    }


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
