"""One training stage: recipe + shards + (optional) previous weights -> checkpoints, final weights.

Layout of a stage's run directory::

    config.json            resolved recipe, model params, DeepSpeed config, world, inputs
    checkpoints/step_N/    DeepSpeed tag + trainer_rank{r}.pt (resume point); ``latest``
    metrics.jsonl          one line per logged step (loss, per-codebook NLL, LR, ...)
    tensorboard/           the same scalars for TensorBoard
    summary.png/.html      the run summary
    final/                 ZONOS2 layout (params.json + model.pth): the next stage's init
    eval.json              the mini-eval report (``accord.train.eval``)
    result.json            step count, first/last loss, loader counters, timings

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
from accord.train.data import LoaderConfig, StageLoader, join_uri
from accord.train.engine import apply_activation_checkpointing, build_engine, init_distributed
from accord.train.examples import ExampleBuilder
from accord.train.loss import training_loss
from accord.train.metrics import MetricsLogger, expert_utilisation, sum_router_stats, write_summary
from accord.train.recipe import Recipe, load_recipe
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
    from accord.tokenize.vocab import DEFAULT_VOCAB
    from accord.train.eval import _tokenize_refs

    refs = _tokenize_refs(args.shards)
    return {
        "stage": args.stage,
        "steps": step,
        "recipe": recipe.to_dict(),
        "shards": args.shards,
        "vocab": DEFAULT_VOCAB.config.to_dict(),
        "codec": refs.get("codec", recipe.eval.codec),
        "speaker_ref": refs.get("speaker", recipe.eval.speaker),
    }


def _allreduce_mean(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t.tolist()


def run_stage(args: StageArgs) -> dict[str, Any]:
    """Train one stage (resuming from the run dir's latest checkpoint if any)."""
    from accord.model.config import get_flavour
    from accord.model.zonos import ZonosModel

    t_start = time.perf_counter()
    info = init_distributed()
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
    K = model_cfg.n_codebooks
    losses: list[float] = []
    while step < recipe.steps:
        t0 = time.perf_counter()
        batches = loader.step_batches(eng_cfg.grad_accum)
        loss_sum = nll_sum = bal_sum = 0.0
        nll_K = torch.zeros(K, dtype=torch.float64)
        n_K = torch.zeros(K, dtype=torch.float64)
        frames = 0
        router: dict[int, torch.Tensor] = {}
        for b in batches:
            b = b.to(info.device)
            out = engine(
                b.ids_BTC, doc_ids_BT=b.doc_ids_BT, speaker_NS=b.speaker_NS, speaker_pos_N2=b.speaker_pos_N2
            )
            lo = training_loss(out.logits_BTKV, b.ids_BTC, b.mask_BTK, out.balance_loss, eng_cfg.balance_coef)
            engine.backward(lo.loss)
            engine.step()
            loss_sum += float(lo.loss.detach())
            nll_sum += float(lo.nll.detach())
            bal_sum += float(lo.balance)
            nll_K += torch.nan_to_num(lo.nll_K.double() * lo.n_tokens_K.double().cpu())
            n_K += lo.n_tokens_K.double().cpu()
            frames += b.n_frames
            router = sum_router_stats(router, out.router_stats)
        step += 1
        dt = time.perf_counter() - t0
        A = len(batches)
        loss, nll, bal = _allreduce_mean([loss_sum / A, nll_sum / A, bal_sum / A])
        losses.append(loss)
        if rank == 0 and (step % recipe.log_every == 0 or step == recipe.steps or step == 1):
            gn = engine.get_global_grad_norm()
            row: dict[str, Any] = {
                "loss": loss,
                "nll": nll,
                "balance": bal,
                "grad_norm": None if gn is None else float(gn),
                "tokens_per_s": frames * world / dt,
                "frames": frames,
                "step_s": dt,
                **{f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(engine.optimizer.param_groups)},
                **{f"nll/cb{k}": float(nll_K[k] / n_K[k]) for k in range(K) if n_K[k] > 0},
                **expert_utilisation(router),
                **{f"data/{k}": v for k, v in loader.state_dict()["stats"].items()},
            }
            metrics.log(step, row)
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
        "losses_this_run": losses,
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
                result["eval"] = mini_eval(final_dir, args.shards, recipe, run_dir / "eval.json")
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
