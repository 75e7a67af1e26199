"""One training stage: recipe + shards + (optional) previous weights -> checkpoints, final weights.

Layout of a stage's run directory::

    config.json            resolved recipe, model params, DeepSpeed config, world, inputs
    checkpoints/step_N/    DeepSpeed tag + trainer_rank{r}.pt (resume point); ``latest``
    metrics.jsonl          one line per logged step: loss, per-codebook NLL, expert load over the
                           window since the last log (``StepMetrics``), LR, grad norm, ...
    tensorboard/           the same scalars for TensorBoard
    summary.png/.html      the run summary
    final/                 ZONOS2 layout (params.json + model.pth): the next stage's init
    eval.json              the mini-eval report (``accord.train.eval``)
    result.json            steps, logged losses, loader counters, frames/s, peak GPU memory

Re-running a stage on the same run dir resumes from its latest checkpoint.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from accord.train import checkpoint as ckpt
from accord.train.data import Batch, LoaderConfig, StageLoader, join_uri
from accord.train.engine import apply_activation_checkpointing, build_engine, init_distributed
from accord.train.examples import ExampleBuilder
from accord.train.loss import training_loss
from accord.train.metrics import MetricsLogger, write_summary
from accord.train.recipe import Recipe, load_recipe
from accord.train.step_metrics import StepMetrics
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class StageArgs:
    stage: str
    shards: str
    run_dir: Path
    model: str = "debug"
    init: Path | None = None
    steps: int | None = None
    seed: int = 1234
    debug_recipe: bool | None = None  # default: the debug twin for the debug model
    deepspeed_config: dict[str, Any] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # recipe overrides (nested dict)
    run_eval: bool | None = None  # default: the recipe's eval.enabled
    stop_after: int | None = None  # leave after this step (tests, preemption drills); resumable


def resolve_recipe(args: StageArgs) -> Recipe:
    debug = args.model == "debug" if args.debug_recipe is None else args.debug_recipe
    recipe = load_recipe(args.stage, debug=debug, overrides=args.overrides)
    if args.steps is not None:
        recipe.steps = int(args.steps)
    recipe.data.seed = args.seed
    return recipe


def init_speaker_lda(model: nn.Module, shards: str) -> bool:
    """Initialise ``speaker_lda_projection`` from ``SHARDS/lda.npz`` (x @ W.T + b), zero-padded."""
    import fsspec

    uri = join_uri(shards, "lda.npz")
    try:
        with fsspec.open(uri, "rb") as f:
            z = np.load(f)
            W, b = z["weight"], z["bias"]
    except FileNotFoundError:
        log.warning("no %s: speaker_lda_projection keeps its random init", uri)
        return False
    lin = model.speaker_lda_projection
    out_dim, in_dim = lin.weight.shape
    if W.shape[1] != in_dim:
        raise ValueError(f"lda.npz projects {W.shape[1]}-d embeddings, the model expects {in_dim}-d")
    d = min(out_dim, W.shape[0])
    if W.shape[0] != out_dim:
        log.warning(
            "lda.npz has %d dims, the model %d: using the first %d, the rest zero", W.shape[0], out_dim, d
        )
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[:d] = torch.from_numpy(W[:d]).float()
        lin.bias[:d] = torch.from_numpy(b[:d]).float()
    return True


def export_extra(args: StageArgs, recipe: Recipe, step: int) -> dict[str, Any]:
    """What ``accord synth`` and the next stage need beside the weights (vocab, codec, speaker refs)."""
    from accord.tokenize.shards import RANDOM_WEIGHTS_KEY
    from accord.tokenize.vocab import DEFAULT_VOCAB
    from accord.train.eval import tokenize_refs

    refs = tokenize_refs(args.shards)
    return {
        "stage": args.stage,
        "steps": step,
        "recipe": recipe.to_dict(),
        "shards": args.shards,
        "vocab": DEFAULT_VOCAB.config.to_dict(),
        "codec": refs.get("codec", recipe.eval.codec),
        "speaker_ref": refs.get("speaker", recipe.eval.speaker),
        # which refs made the training codes with seeded random weights (None: not recorded);
        # synth and the eval decode with random weights only when this says so
        RANDOM_WEIGHTS_KEY: refs.get(RANDOM_WEIGHTS_KEY),
    }


def train_step(
    engine: Any, batches: list[Batch], device: torch.device, balance_coef: float, metrics: StepMetrics
) -> None:
    """One optimizer step over this rank's micro-batches (DeepSpeed steps at the accumulation
    boundary). Queues device work only: the metrics stay on the device until they are logged."""
    for b in batches:
        b = b.to_device(device)
        out = engine(
            b.ids_BTC, doc_ids_BT=b.doc_ids_BT, speaker_NS=b.speaker_NS, speaker_pos_N2=b.speaker_pos_N2
        )
        lo = training_loss(out.logits_BTKV, b.ids_BTC, b.mask_BTK, out.balance_loss, balance_coef)
        engine.backward(lo.loss)
        engine.step()
        metrics.add(lo, out.router_stats, b.n_frames)
    metrics.end_step()


def run_stage(args: StageArgs) -> dict[str, Any]:
    """Train one stage (resuming from the run dir's latest checkpoint if any)."""
    from accord.model.config import get_flavour
    from accord.model.zonos import ZonosModel

    t_start = time.perf_counter()
    info = init_distributed()
    if info.device.type == "cuda":  # result.json reports this stage's peak, not the process's
        torch.cuda.reset_peak_memory_stats(info.device)
    rank, world = info.rank, info.world
    recipe = resolve_recipe(args)
    eng_cfg = recipe.engine
    run_dir = Path(args.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    if dist.is_initialized():
        dist.barrier()

    # model: same seed on every rank (DeepSpeed broadcasts rank 0's weights anyway)
    torch.manual_seed(args.seed)
    model_cfg = get_flavour(args.model)
    model = ZonosModel(model_cfg)
    if args.init is not None:
        ckpt.load_init_weights(model, Path(args.init))
    else:
        init_speaker_lda(model, args.shards)
    model.speaker_lda_projection.requires_grad_(False)  # fixed LDA from tokenize
    if eng_cfg.activation_checkpointing:
        apply_activation_checkpointing(model)
    if eng_cfg.ep_size > 1:
        from accord.train.parallel import apply_expert_parallel

        apply_expert_parallel(model, eng_cfg.ep_size)
    model.to(info.device)

    engine, _opt, _sched, ds_cfg = build_engine(
        model, eng_cfg, recipe.optim, recipe.steps, info, args.deepspeed_config
    )
    loader = StageLoader(
        LoaderConfig(
            root=args.shards,
            stage=args.stage,
            max_frames=recipe.data.max_frames,
            seqs_per_batch=recipe.data.seqs_per_batch,
            seed=recipe.data.seed,
            min_agreement=recipe.data.min_agreement,
            dataset_weights=recipe.data.dataset_weights,
            eligibility=recipe.data.eligibility,
            audio_pad_id=model_cfg.audio_pad_id,
            text_pad_id=model_cfg.text_pad_id,
        ),
        ExampleBuilder(recipe.conditioning, seed=recipe.data.seed),
        rank=rank,
        world=world,
    )
    if rank == 0:
        ckpt.write_json_atomic(
            run_dir / "config.json",
            {
                "stage": args.stage,
                "shards": args.shards,
                "init": str(args.init) if args.init else None,
                "model_flavour": args.model,
                "model": model_cfg.to_params(),
                "recipe": recipe.to_dict(),
                "deepspeed": ds_cfg,
                "world_size": world,
                "seed": args.seed,
                "selection": {
                    "clips": len(loader.selection.weights),
                    "shards": len(loader.selection.shards),
                    "candidates": loader.selection.n_candidates,
                },
            },
        )

    step = 0
    expert_parallel = eng_cfg.ep_size > 1
    state = ckpt.load(engine, ckpt_dir, rank)
    if state is not None:
        step = int(state["step"])
        loader.load_state_dict(state["data"])

    metrics = MetricsLogger(run_dir, enabled=rank == 0)
    window = StepMetrics(model_cfg.n_codebooks, info.device)
    logged_losses: dict[int, float] = {}
    frames_total, t_loop = 0, time.perf_counter()
    while step < recipe.steps:
        train_step(engine, loader.step_batches(eng_cfg.grad_accum), info.device, eng_cfg.balance_coef, window)
        step += 1
        if step % recipe.log_every == 0 or step == recipe.steps or step == 1:
            row = window.flush(world)  # every rank: the one host sync of the logging window
            frames_total += row["frames"]
            logged_losses[step] = row["loss"]
            gn = engine.get_global_grad_norm()
            groups = engine.optimizer.param_groups
            row["grad_norm"] = None if gn is None else float(gn)
            row.update({f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(groups)})
            row.update({f"data/{k}": v for k, v in loader.state_dict()["stats"].items()})
            metrics.log(step, row)  # writes on rank 0 only
        if step % recipe.ckpt_every == 0 or step == recipe.steps:
            experts = None
            if expert_parallel:
                from accord.train.parallel import local_expert_state

                experts = local_expert_state(engine.module)
            ckpt.save(engine, ckpt_dir, step, loader.state_dict(), rank, local_experts=experts)
        if args.stop_after is not None and step >= args.stop_after and step < recipe.steps:
            log.warning("stopping after step %d on request (--stop-after); re-run to resume", step)
            metrics.close()
            return {"stage": args.stage, "steps": step, "stopped": True}
    metrics.close()
    train_s = time.perf_counter() - t_loop

    # final weights in ZONOS2 layout (unsharded), written by rank 0
    final_dir = run_dir / "final"
    if eng_cfg.ep_size > 1:
        from accord.train.parallel import full_state_dict

        full = full_state_dict(engine.module)
    else:
        full = ckpt.clean_state_dict(engine.module.state_dict())
    result = {
        "stage": args.stage,
        "steps": step,
        "world_size": world,
        "logged_losses": logged_losses,
        "frames_per_s": frames_total / max(1e-9, train_s),  # incl. checkpoint saves
        "train_seconds": train_s,
        "peak_memory_gib": (
            torch.cuda.max_memory_allocated(info.device) / 2**30 if info.device.type == "cuda" else None
        ),
        "loader": loader.state_dict()["stats"],
        "skipped_shards": loader.stats.skipped_shards,
        "final": str(final_dir),
        "seconds": time.perf_counter() - t_start,
        "expert_parallel": {
            "ep_size": eng_cfg.ep_size,
            "local_experts": {
                n: int(p.shape[0]) for n, p in engine.module.named_parameters() if n.endswith("w13")
            },
        },
    }
    if rank == 0:
        ckpt.export_zonos2(
            {k: v.detach().cpu() for k, v in full.items()},
            model_cfg,
            final_dir,
            extra=export_extra(args, recipe, step),
        )
        write_summary(run_dir, f"accord {args.stage} ({args.model})", extra={"stage": args.stage})
        run_eval = recipe.eval.enabled if args.run_eval is None else args.run_eval
        if run_eval:
            from accord.train.eval import mini_eval

            try:
                result["eval"] = mini_eval(final_dir, args.shards, recipe, run_dir / "eval.json", info.device)
            except Exception as e:  # the eval never loses the trained weights
                log.exception("mini-eval failed")
                result["eval"] = {"error": f"{type(e).__name__}: {e}"}
                ckpt.write_json_atomic(run_dir / "eval.json", result["eval"])
        ckpt.write_json_atomic(run_dir / "result.json", result)
    if dist.is_initialized():
        dist.barrier()
    return result


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def set_threads_from_env() -> None:
    n = os.environ.get("ACCORD_TRAIN_THREADS")
    if n:
        torch.set_num_threads(int(n))
