"""DeepSpeed engine setup: process groups, optimizer param groups, LR schedule, ZeRO config.

Parallelism stays out of the model: ``accord.train.trainer.Trainer`` builds a plain
``ZonosModel``, applies expert parallelism (``accord.train.parallel``), moves it to its device,
wraps its blocks for activation checkpointing (here) and hands it to :func:`build_engine`
(``deepspeed.initialize``). On CPU it runs fp32 over gloo; on GPU bf16 over NCCL.

Optimizer: Muon for the hidden matrices (attention, FFN, experts, router) and AdamW for
embeddings, the output head, the speaker projections, norms, biases and per-head scalars, as
the ZONOS2 report trains. We build DeepSpeed's own ``MuonWithAuxAdam`` ourselves so the split
is ours (DeepSpeed's automatic tagging would put the output head on Muon), tag every parameter
with ``use_muon`` (ZeRO 1/2 orthogonalizes full matrices before partitioning by that tag),
and split expert parameters into DeepSpeed MoE groups with
``split_params_into_different_moe_groups_for_optimizer``.

Measured here: with ZeRO 0 the engine's loss path equals a bare PyTorch loop (clip, Muon,
LambdaLR) to the last digit; ZeRO 1/2 computes Muon inside its flat partitions and, with
gradient clipping active, drifts slightly from it (without clipping all three agree).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from accord.train.recipe import EngineConfig, OptimConfig

log = logging.getLogger(__name__)

# parameters by name that are never Muon: inputs, the head, speaker projections
ADAM_NAME_KEYS = ("embed", "multi_output", "speaker_lda_projection", "speaker_projection", "lm_head")


@dataclass
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: torch.device


def init_distributed() -> DistInfo:
    """Initialise torch.distributed through DeepSpeed (gloo on CPU, nccl on GPU); idempotent.

    Works as a single process without a launcher (world 1 on a free local port), under
    torchrun, and under the ``deepspeed`` launcher (``LOCAL_RANK`` / ``--local_rank``).
    """
    import deepspeed
    import torch.distributed as dist

    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    cuda = torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "") != "cpu"
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", verbose=False)
    local_rank = int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


# --- optimizer --------------------------------------------------------------------------------


def is_muon_param(name: str, p: nn.Parameter) -> bool:
    return p.ndim >= 2 and not any(k in name for k in ADAM_NAME_KEYS)


def ns_method(cfg: OptimConfig) -> str:
    """The Newton-Schulz variant; ``auto`` is ``gram`` on every device.

    DeepSpeed runs ``gram`` in fp16 where the device multiplies fp16 natively and in fp32
    elsewhere, so it always runs at the device's native speed, and on the Gram matrix it does
    fewer FLOPs for rectangular weights. ``standard`` always runs in bf16, which a CPU without
    AVX512-BF16/AMX emulates (its matmuls ~3x slower than fp32): on such a Xeon, three steps of
    the ``small`` flavour took 144 s of CPU with ``standard`` and 50 s with ``gram``, the losses
    equal to 1e-3.
    """
    return "gram" if cfg.ns_method == "auto" else cfg.ns_method


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Muon / AdamW-decay / AdamW-no-decay groups; tags ``use_muon`` on every parameter."""
    muon, adam_decay, adam_plain = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        use_muon = cfg.name == "muon" and is_muon_param(name, p)
        p.use_muon = use_muon
        if use_muon:
            muon.append(p)
        elif p.ndim >= 2:
            adam_decay.append(p)
        else:
            adam_plain.append(p)
    groups: list[dict[str, Any]] = []
    if muon:
        groups.append(
            {
                "name": "muon",
                "params": muon,
                "use_muon": True,
                "lr": cfg.muon_lr,
                "momentum": cfg.momentum,
                "weight_decay": cfg.weight_decay,
                "ns_method": ns_method(cfg),
            }
        )
    adam = {"use_muon": False, "betas": tuple(cfg.betas), "eps": cfg.eps, "lr": cfg.adam_lr}
    if adam_decay:
        groups.append({"name": "adam_decay", "params": adam_decay, "weight_decay": cfg.weight_decay, **adam})
    if adam_plain:
        groups.append({"name": "adam_no_decay", "params": adam_plain, "weight_decay": 0.0, **adam})
    for g in groups:
        g["initial_lr"] = g["lr"]
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    from deepspeed.moe.utils import split_params_into_different_moe_groups_for_optimizer

    groups = param_groups(model, cfg)
    groups = split_params_into_different_moe_groups_for_optimizer(groups)
    if cfg.name == "muon":
        from deepspeed.runtime.zero.muon.muon_optimizer import MuonWithAuxAdam

        # inline AdamW for the aux half: no fused_adam build on CPU, same math
        return MuonWithAuxAdam(groups, adam_optimizer=None, adam_w_mode=True)
    if cfg.name == "adamw":
        for g in groups:
            g.pop("use_muon", None)
            g.pop("momentum", None)
            g.pop("ns_method", None)
            g["lr"] = g["initial_lr"] = cfg.adam_lr
            g.setdefault("betas", tuple(cfg.betas))
        return torch.optim.AdamW(groups, lr=cfg.adam_lr, betas=tuple(cfg.betas), eps=cfg.eps)
    raise ValueError(f"unknown optimizer {cfg.name!r}; expected muon or adamw")


def lr_factor(step: int, total: int, cfg: OptimConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine from 1 to ``min_lr_ratio`` at ``total``."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(opt: torch.optim.Optimizer, total_steps: int, cfg: OptimConfig):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps, cfg))


# --- deepspeed --------------------------------------------------------------------------------


def use_bf16(eng: EngineConfig, device: torch.device) -> bool:
    if eng.precision == "auto":
        return device.type == "cuda"
    return eng.precision == "bf16"


def deepspeed_config(
    eng: EngineConfig, optim: OptimConfig, device: torch.device, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,  # one packed micro-batch (its own B x T) per call
        "gradient_accumulation_steps": eng.grad_accum,
        "gradient_clipping": optim.grad_clip,
        "zero_optimization": {"stage": eng.zero_stage},
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": use_bf16(eng, device)},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "checkpoint": {"tag_validation": "Ignore"},
    }
    if extra:
        from accord.core.config import deep_merge

        cfg = deep_merge(cfg, extra)
    return cfg


def apply_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each transformer block in backward (torchtitan's per-layer AC).

    The recomputation must run exactly what the forward ran, or it saves other tensors
    (``CheckpointError: ... 77 vs 74`` when SDPA's dispatcher switched kernels). By construction:
    - non-reentrant ``torch.utils.checkpoint`` (saved-tensor hooks; kwargs, ZeRO and partial
      recomputation work), with its default determinism check: a recomputation that still
      differs raises naming the tensor instead of training on wrong gradients;
    - the attention kernel is chosen once per model forward and reaches each block as data
      (``accord.model.attention.AttentionMask``), never by a dispatcher inside the block;
    - any other choice made inside a block through ``accord.model.recompute.recompute_stable``
      is recorded in the forward and replayed in the recomputation (``context_fn``);
    - the RNG state is restored for the recomputation, so a random op (none today) would
      draw the same numbers twice.
    Wrapping is idempotent; ``state_dict`` keys are unchanged (the wrapper strips its prefix).
    Apply it once the model is on its training device: the MoE kernel choice is settled here for
    the parameters' device (``Trainer`` moves the model first).
    """
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl,
        CheckpointWrapper,
        checkpoint_wrapper,
    )

    from accord.model.moe import grouped_mm_supported
    from accord.model.recompute import choice_log_contexts

    # the MoE kernel probe runs a tiny case on first use and is cached: run it now rather than
    # in the first checkpointed forward (it keeps no autograd state, but costs that step); on
    # CUDA the choice comes from the capability, without a probe
    p = next(model.parameters())
    for dtype in {p.dtype, torch.float32, torch.bfloat16}:
        grouped_mm_supported(p.device.type, dtype)
    layers = model.layers
    for i in range(len(layers)):
        if isinstance(layers[i], CheckpointWrapper):
            continue
        layers[i] = checkpoint_wrapper(
            layers[i],
            checkpoint_impl=CheckpointImpl.NO_REENTRANT,
            preserve_rng_state=True,
            context_fn=choice_log_contexts,
            determinism_check="default",
        )


def build_engine(
    model: nn.Module,
    eng: EngineConfig,
    optim: OptimConfig,
    total_steps: int,
    dist_info: DistInfo,
    extra_config: dict[str, Any] | None = None,
):
    """(engine, optimizer, scheduler) for ``model`` (already parallelized)."""
    import deepspeed

    opt = build_optimizer(model, optim)
    sched = build_scheduler(opt, total_steps, optim)
    ds_cfg = deepspeed_config(eng, optim, dist_info.device, extra_config)
    engine, opt, _, sched = deepspeed.initialize(
        model=model, optimizer=opt, lr_scheduler=sched, config=ds_cfg, dist_init_required=False
    )
    if dist_info.world == 1 and eng.zero_stage == 0:
        # One process: nothing to average. DeepSpeed would still copy every gradient into
        # flat buckets, all-reduce them with itself, divide by 1 and copy them back each step.
        engine.enable_backward_allreduce = False
    return engine, opt, sched, ds_cfg
