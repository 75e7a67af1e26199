"""The trainer of one stage, in torchtitan's shape: build once, then step, checkpoint, export, eval.

:class:`Trainer` builds everything in its constructor, in the order the pieces depend on each
other: process group and device, recipe, model (weights from ``--init`` or the shards' LDA),
parallelism (expert parallel, then the move to the training device, then activation
checkpointing, so its kernel probe runs where training will), the DeepSpeed engine, the data
loader, ``config.json``, and the resume from the run dir's latest checkpoint. Each later phase is
one method that can be called on its own (tests do): :meth:`Trainer.train_step` (one optimizer
step, device work only), :meth:`Trainer.checkpoint`, :meth:`Trainer.train` (the loop with its log
and checkpoint cadence and ``stop_after``), :meth:`Trainer.export` (``final/`` in the ZONOS2
layout), :meth:`Trainer.evaluate` (the :class:`~accord.train.evaluator.Evaluator` the trainer is
given, whose failures never lose the weights) and :meth:`Trainer.result`; :meth:`Trainer.run`
chains them as ``accord train STAGE`` runs them.
Every method is called on every rank; the ones that write files write on rank 0.

The run directory's layout is documented in :mod:`accord.train.stage`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from accord.core import storage
from accord.core.shards import LDA_NPZ, RANDOM_WEIGHTS_KEY, read_tokenize_json, shards_file, tokenize_refs
from accord.core.vocab import DEFAULT_VOCAB
from accord.model.checkpoint import init_speaker_lda
from accord.model.config import ModelConfig, get_flavour
from accord.model.zonos import ZonosModel
from accord.train import checkpoint as ckpt
from accord.train.data import Batch, LoaderConfig, StageLoader, gather_state
from accord.train.engine import apply_activation_checkpointing, build_engine, init_distributed
from accord.train.evaluator import EVAL_JSON, REPORT_ITEMS, Evaluator
from accord.train.examples import ExampleBuilder
from accord.train.loss import training_loss
from accord.train.metrics import MetricsLogger, write_summary
from accord.train.recipe import Recipe, load_recipe
from accord.train.step_metrics import StepMetrics

log = logging.getLogger(__name__)


@dataclass
class StageArgs:
    """What one stage run needs: the trainer's config (the recipe comes from ``stage``)."""

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


def init_speaker_lda_from_shards(model: ZonosModel, shards: str) -> bool:
    """``speaker_lda_projection`` from ``SHARDS/lda.npz`` (cut or zero-padded to the model's dims);
    False, with a warning, when the shards have none."""
    uri = shards_file(shards, LDA_NPZ)
    if not storage.exists(uri):
        log.warning("no %s: speaker_lda_projection keeps its random init", uri)
        return False
    init_speaker_lda(model, uri, exact=False)
    return True


def export_extra(args: StageArgs, recipe: Recipe, step: int) -> dict[str, Any]:
    """What synthesis (``synth``) and the next stage need beside the weights (vocab, codec, speaker refs)."""
    refs = tokenize_refs(args.shards)
    return {
        "stage": args.stage,
        "steps": step,
        "recipe": recipe.to_dict(),
        "shards": args.shards,
        "vocab": DEFAULT_VOCAB.config.to_dict(),
        # what the shards were tokenized with; a shard set without a record leaves them out and
        # synth falls back to tokenize's defaults (accord.tokenize.codec / speaker)
        **{k: refs[r] for k, r in (("codec", "codec"), ("speaker_ref", "speaker")) if r in refs},
        # which refs made the training codes with seeded random weights (None: not recorded);
        # synth and the eval decode with random weights only when this says so
        RANDOM_WEIGHTS_KEY: refs.get(RANDOM_WEIGHTS_KEY),
    }


def check_speaker_width(shards: str, model_cfg: ModelConfig) -> None:
    """The shards' speaker embeddings fit the model's ``speaker_embedding_dim`` (a 192-d ECAPA
    tokenize for the 2048-d ``zonos2-8b`` would fail deep inside the first step otherwise)."""
    speaker = (read_tokenize_json(shards) or {}).get("speaker") or {}
    dim = speaker.get("dim") if isinstance(speaker, dict) else None
    if dim is not None and int(dim) != model_cfg.speaker_embedding_dim:
        raise ValueError(
            f"{shards} holds {dim}-d speaker embeddings ({speaker.get('ref')}), the model takes "
            f"{model_cfg.speaker_embedding_dim}-d: tokenize with a matching --speaker "
            "(zonos2-spk:release for zonos2-8b, ecapa:* for the 192-d flavours)"
        )


def build_model(args: StageArgs, model_cfg: ModelConfig) -> ZonosModel:
    """The plain model with its starting weights (same seed on every rank; DeepSpeed broadcasts
    rank 0's weights anyway): a previous stage's export, else random with the shards' LDA."""
    check_speaker_width(args.shards, model_cfg)
    torch.manual_seed(args.seed)
    model = ZonosModel(model_cfg)
    if args.init is not None:
        ckpt.load_init_weights(model, Path(args.init))
    else:
        init_speaker_lda_from_shards(model, args.shards)
    model.speaker_lda_projection.requires_grad_(False)  # fixed LDA from tokenize
    return model


def build_loader(
    args: StageArgs, recipe: Recipe, model_cfg: ModelConfig, rank: int, world: int
) -> StageLoader:
    data = recipe.data
    return StageLoader(
        LoaderConfig(
            root=args.shards,
            stage=args.stage,
            max_frames=data.max_frames,
            seqs_per_batch=data.seqs_per_batch,
            seed=data.seed,
            dataset_weights=data.dataset_weights,
            eligibility=data.eligibility,
            audio_pad_id=model_cfg.audio_pad_id,
            text_pad_id=model_cfg.text_pad_id,
            read_mode=data.read_mode,
            prefetch=data.prefetch_steps * recipe.engine.grad_accum,
            shuffle_window_mb=data.shuffle_window_mb,
        ),
        ExampleBuilder(recipe.conditioning, seed=data.seed),
        rank=rank,
        world=world,
    )


class Trainer:
    """One stage's training; see the module docstring for the phases."""

    def __init__(self, args: StageArgs, evaluator: Evaluator | None = None) -> None:
        self.args = args
        self.evaluator = evaluator
        self.t_start = time.perf_counter()
        self.dist_info = init_distributed()
        self.device, self.rank, self.world = self.dist_info.device, self.dist_info.rank, self.dist_info.world
        if self.device.type == "cuda":  # result.json reports this stage's peak, not the process's
            torch.cuda.reset_peak_memory_stats(self.device)
        self.recipe = resolve_recipe(args)
        self.run_dir = Path(args.run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.final_dir = self.run_dir / "final"
        if self.rank == 0:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.barrier()

        eng = self.recipe.engine
        self.model_cfg = get_flavour(args.model)
        model = build_model(args, self.model_cfg)
        if eng.ep_size > 1:
            from accord.train.parallel import apply_expert_parallel

            apply_expert_parallel(model, eng.ep_size)
        model.to(self.device)
        if eng.activation_checkpointing:  # after the move: its MoE kernel probe runs on this device
            apply_activation_checkpointing(model)
        self.engine, _opt, _sched, self.ds_config = build_engine(
            model, eng, self.recipe.optim, self.recipe.steps, self.dist_info, args.deepspeed_config
        )
        self.loader = build_loader(args, self.recipe, self.model_cfg, self.rank, self.world)
        if self.rank == 0:
            storage.write_json_atomic(self.run_dir / "config.json", self.config())

        self.step = 0  # optimizer steps done
        self.resume()
        self.metrics = MetricsLogger(self.run_dir, enabled=self.rank == 0)
        self.window = StepMetrics(self.model_cfg.n_codebooks, self.device)
        self.logged_losses: dict[int, float] = {}
        self.frames = 0  # frames trained on in this process, over the logged windows
        self.train_seconds = 0.0

    @property
    def expert_parallel(self) -> bool:
        return self.recipe.engine.ep_size > 1

    def barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier()

    def config(self) -> dict[str, Any]:
        """``config.json``: the resolved recipe, model params, DeepSpeed config, world, inputs."""
        a, sel = self.args, self.loader.selection
        return {
            "stage": a.stage,
            "shards": a.shards,
            "init": str(a.init) if a.init else None,
            "model_flavour": a.model,
            "model": self.model_cfg.to_params(),
            "recipe": self.recipe.to_dict(),
            "deepspeed": self.ds_config,
            "world_size": self.world,
            "seed": a.seed,
            "selection": {
                "clips": sel.n_selected,
                "shards": len(sel.shards),
                "candidates": sel.n_candidates,
            },
        }

    # --- steps ---------------------------------------------------------------------------------

    def train_step(self, batches: list[Batch]) -> None:
        """One optimizer step over this rank's micro-batches (DeepSpeed steps at the accumulation
        boundary). Queues device work only: the metrics stay on the device until they are logged."""
        balance_coef = self.recipe.engine.balance_coef
        for b in batches:
            b = b.to_device(self.device)
            out = self.engine(
                b.ids_BTC, doc_ids_BT=b.doc_ids_BT, speaker_NS=b.speaker_NS, speaker_pos_N2=b.speaker_pos_N2
            )
            lo = training_loss(out.logits_BTKV, b.ids_BTC, b.mask_BTK, out.balance_loss, balance_coef)
            self.engine.backward(lo.loss)
            self.engine.step()
            self.window.add(lo, out.router_stats, b.n_frames)
        self.window.end_step()
        self.step += 1

    def log_metrics(self) -> dict[str, Any]:
        """Flush the window since the last log (every rank: its one host sync) into metrics.jsonl."""
        row = self.window.flush(self.world)
        self.frames += row["frames"]
        self.logged_losses[self.step] = row["loss"]
        gn = self.engine.get_global_grad_norm()
        row["grad_norm"] = None if gn is None else float(gn)
        row.update(
            {f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(self.engine.optimizer.param_groups)}
        )
        row.update({f"data/{k}": v for k, v in self.loader.state_dict()["stats"].items()})
        row.update({f"data/{k}": v for k, v in self.loader.io_stats().items()})
        self.metrics.log(self.step, row)  # writes on rank 0 only
        return row

    def train(self) -> bool:
        """Step from where setup left off to the recipe's last step, logging and checkpointing on
        the recipe's cadence; False when ``stop_after`` ended it early (a resumable stop)."""
        steps, grad_accum = self.recipe.steps, self.recipe.engine.grad_accum
        stop_after = self.args.stop_after
        t0 = time.perf_counter()
        try:
            while self.step < steps:
                self.train_step(self.loader.step_batches(grad_accum))
                if self.step % self.recipe.log_every == 0 or self.step in (1, steps):
                    self.log_metrics()
                if self.step % self.recipe.ckpt_every == 0 or self.step == steps:
                    self.checkpoint()
                if stop_after is not None and stop_after <= self.step < steps:
                    log.warning(
                        "stopping after step %d on request (--stop-after); re-run to resume", self.step
                    )
                    return False
            return True
        finally:
            self.train_seconds += time.perf_counter() - t0  # incl. checkpoint saves
            self.loader.close()  # the prefetch thread ends here, on every path
            self.metrics.close()
            if self.rank == 0 or self.loader.plan.mode == "split":
                log.info("rank %d loader: %s", self.rank, self.loader.io_stats())

    # --- state ---------------------------------------------------------------------------------

    def checkpoint(self) -> str:
        """Save everything needed to continue after ``self.step`` exactly (every rank); the tag."""
        experts = None
        if self.expert_parallel:
            from accord.train.parallel import local_expert_state

            experts = local_expert_state(self.engine.module)
        data_state = gather_state(self.loader.state_dict())  # every rank's position: a resume can re-split
        return ckpt.save(self.engine, self.ckpt_dir, self.step, data_state, self.rank, local_experts=experts)

    def resume(self) -> bool:
        """Restore the run dir's newest good checkpoint (weights, optimizer, data position, RNG), if
        any; a corrupt newer one is skipped with a warning, none good raises ``CheckpointError``."""
        state = ckpt.load(self.engine, self.ckpt_dir, self.rank)
        if state is None:
            return False
        self.step = int(state["step"])
        self.loader.load_state_dict(state["data"])
        return True

    # --- outputs -------------------------------------------------------------------------------

    def export(self) -> Path:
        """``final/`` in the ZONOS2 layout (unsharded weights + params.json): the next stage's
        init and synth's input. Every rank gathers (expert blocks); rank 0 writes."""
        if self.expert_parallel:
            from accord.train.parallel import full_state_dict

            full = full_state_dict(self.engine.module)
        else:
            full = ckpt.clean_state_dict(self.engine.module.state_dict())
        if self.rank == 0:
            ckpt.export_zonos2(
                {k: v.detach().cpu() for k, v in full.items()},
                self.model_cfg,
                self.final_dir,
                extra=export_extra(self.args, self.recipe, self.step),
            )
        return self.final_dir

    def evaluate(self) -> dict[str, Any] | None:
        """The evaluator's report on ``final/`` into ``eval.json``; returned without its per-sentence
        items (rank 0; None elsewhere, or without an evaluator). A failing eval is reported in
        ``eval.json`` and never raised: the trained weights are already written."""
        if self.rank != 0 or self.evaluator is None:
            return None
        try:
            report = self.evaluator(self.final_dir, self.args.shards, self.recipe, self.device)
        except Exception as e:
            log.exception("mini-eval failed")
            report = {"error": f"{type(e).__name__}: {e}"}
        storage.write_json_atomic(self.run_dir / EVAL_JSON, report)
        return {k: v for k, v in report.items() if k != REPORT_ITEMS}

    def result(self) -> dict[str, Any]:
        """What ``result.json`` records of the stage (this process's steps and timings)."""
        module = self.engine.module
        return {
            "stage": self.args.stage,
            "steps": self.step,
            "world_size": self.world,
            "logged_losses": self.logged_losses,
            "frames_per_s": self.frames / max(1e-9, self.train_seconds),
            "train_seconds": self.train_seconds,
            "peak_memory_gib": (
                torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None
            ),
            "loader": {**self.loader.state_dict()["stats"], "io": self.loader_io()},
            "skipped_shards": self.loader.stats.skipped_shards,
            "final": str(self.final_dir),
            "seconds": time.perf_counter() - self.t_start,
            "expert_parallel": {
                "ep_size": self.recipe.engine.ep_size,
                "local_experts": {
                    n: int(p.shape[0]) for n, p in module.named_parameters() if n.endswith("w13")
                },
            },
        }

    def loader_io(self) -> dict[str, Any]:
        """This process's data loading cost per rank (a collective: every rank calls it), from
        :meth:`~accord.train.data.StageLoader.io_stats`, with the read mode."""
        mine = self.loader.io_stats()
        ranks: list[Any] = [mine]
        if dist.is_initialized() and self.world > 1:
            ranks = [None] * self.world
            dist.all_gather_object(ranks, mine)
        return {"read_mode": self.loader.plan.mode, "prefetch": self.loader.cfg.prefetch, "ranks": ranks}

    def run(self) -> dict[str, Any]:
        """Train, export, summarise, evaluate and write ``result.json``: a whole stage."""
        if not self.train():
            return {"stage": self.args.stage, "steps": self.step, "stopped": True}
        result = self.result()
        self.export()
        if self.rank == 0:
            write_summary(
                self.run_dir,
                f"accord {self.args.stage} ({self.args.model})",
                extra={"stage": self.args.stage},
            )
            run_eval = self.recipe.eval.enabled if self.args.run_eval is None else self.args.run_eval
            if run_eval and self.evaluator is None:
                log.info("no evaluator given: no mini-eval")
            elif run_eval:
                result["eval"] = self.evaluate()
            storage.write_json_atomic(self.run_dir / "result.json", result)
        self.barrier()
        return result
