"""One training stage: recipe + shards + (optional) previous weights -> checkpoints, final weights.

Layout of a stage's run directory::

    config.json            resolved recipe, model params, DeepSpeed config, world, inputs
    checkpoints/step_N/    DeepSpeed tag + trainer_rank{r}.pt (resume point); ``latest``
    metrics.jsonl          one line per logged step: loss, per-codebook NLL, expert load over the
                           window since the last log (``StepMetrics``), LR, grad norm, ...
    tensorboard/           the same scalars for TensorBoard
    summary.png/.html      the run summary
    final/                 ZONOS2 layout (params.json + model.pth): the next stage's init
    eval.json              the evaluator's report (``accord.train.evaluator``; ``accord train``'s
                           is ``accord.app.evaluation.mini_eval``)
    result.json            steps, logged losses, loader counters, frames/s, peak GPU memory

Re-running a stage on the same run dir resumes from its latest checkpoint. The work is
:class:`accord.train.trainer.Trainer`'s; this module is the entry point the CLI and the
curriculum call, plus the process-wide settings around it.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from accord.train.evaluator import Evaluator
from accord.train.trainer import StageArgs, Trainer

__all__ = ["StageArgs", "run_stage", "set_threads_from_env", "shutdown"]


def run_stage(args: StageArgs, evaluator: Evaluator | None = None) -> dict[str, Any]:
    """Train one stage (resuming from the run dir's latest checkpoint if any), then evaluate its
    weights with ``evaluator`` if given; the result.json dict, or ``{"stage", "steps", "stopped":
    True}`` when ``args.stop_after`` ended it early."""
    return Trainer(args, evaluator=evaluator).run()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def set_threads_from_env() -> None:
    n = os.environ.get("ACCORD_TRAIN_THREADS")
    if n:
        torch.set_num_threads(int(n))
