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
    result.json            steps, logged losses, loader counters (``loader``; ``loader.io``: per
                           rank bytes read, time the step waited on data, peak loader memory),
                           frames/s, peak GPU memory

Re-running a stage on the same run dir resumes from its latest checkpoint. The work is
:class:`accord.train.trainer.Trainer`'s; this module is the entry point the CLI and the
curriculum call, plus the process-wide settings around it.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from accord.core import storage
from accord.core.errors import ConfigError, InputNotFound
from accord.core.shards import (
    INDEX_PARQUET,
    SAMPLES_PARQUET,
    done_marker_uri,
    read_index,
    read_tokenize_json,
    shards_file,
)
from accord.train.evaluator import Evaluator
from accord.train.trainer import StageArgs, Trainer, resolve_recipe

__all__ = ["StageArgs", "check_inputs", "run_stage", "set_threads_from_env", "shutdown"]

RETOKENIZE = "re-run the same `accord tokenize` to finish it, then train"


def check_inputs(args: StageArgs) -> None:
    """Before anything is written: the recipe with its overrides resolves, and ``args.shards`` is
    a finished tokenize output (``samples.parquet``, ``index.parquet``, every indexed shard's done
    marker, and as many shards as ``tokenize.json`` records). A
    :class:`~accord.core.errors.UserError` naming what is wrong and the fix otherwise."""
    resolve_recipe(args)
    shards = str(args.shards)
    if not storage.exists(shards):
        raise InputNotFound(f"--shards {shards}: not found (pass the output folder of `accord tokenize`)")
    missing = [n for n in (SAMPLES_PARQUET, INDEX_PARQUET) if not storage.exists(shards_file(shards, n))]
    if missing:
        raise InputNotFound(
            f"--shards {shards}: no {' or '.join(missing)}, so not a finished tokenize output "
            f"(an interrupted tokenize? {RETOKENIZE})"
        )
    try:
        info = read_tokenize_json(shards) or {}
    except ValueError as e:
        raise ConfigError(f"--shards {shards}: {e} ({RETOKENIZE})") from None
    names = read_index(shards)["shard"].to_pylist()
    n = info.get("n_shards")
    if n is not None and len(names) != int(n):
        raise ConfigError(
            f"--shards {shards}: index.parquet lists {len(names)} of the {n} shards tokenize.json "
            f"records ({RETOKENIZE})"
        )
    unfinished = [name for name in names if not storage.exists(done_marker_uri(shards, name))]
    if unfinished:
        raise ConfigError(
            f"--shards {shards}: {len(unfinished)} indexed shard(s) have no done marker, e.g. "
            f"{unfinished[0]} ({RETOKENIZE})"
        )


def run_stage(args: StageArgs, evaluator: Evaluator | None = None) -> dict[str, Any]:
    """Train one stage (resuming from the run dir's latest checkpoint if any), then evaluate its
    weights with ``evaluator`` if given; the result.json dict, or ``{"stage", "steps", "stopped":
    True}`` when ``args.stop_after`` ended it early. :func:`check_inputs` runs first, so a bad
    override or an unfinished shard set leaves no run dir behind."""
    check_inputs(args)
    return Trainer(args, evaluator=evaluator).run()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def set_threads_from_env() -> None:
    n = os.environ.get("ACCORD_TRAIN_THREADS")
    if n:
        torch.set_num_threads(int(n))
