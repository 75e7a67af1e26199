"""``accord train STAGE|curriculum``: parse, call :func:`accord.train.stage.run_stage` or
:func:`accord.train.curriculum.run_curriculum` with the mini-eval (:func:`accord.app.evaluation.mini_eval`)
as the trainer's evaluator (``--eval/--no-eval`` and the recipe's ``eval.enabled`` decide whether it
runs), print.

The stage recipe (``train/recipes/<stage>.yaml``) is the config's base; ``--config FILE`` (flat
or under ``train:``) and ``--set key=value`` override it, in that order.

Single process: ``accord train pretrain --shards S --model debug --run R``. Several processes:
``torchrun --nproc_per_node 2 -m accord.cli.main train pretrain ...`` or
``deepspeed --no_local_rank -m accord.cli.main train ...`` (``--local_rank`` is accepted too).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from accord.cli.options import build_overrides, config_options, given
from accord.core.stages import STAGES
from accord.model.config import FLAVOURS
from accord.train.recipe import REPLACED_KEYS


def _common(f):
    opts = [
        click.option(
            "--shards", required=True, help="Shards root (local path or fsspec URL) from `accord tokenize`."
        ),
        click.option(
            "--model",
            "model",
            type=click.Choice(list(FLAVOURS)),
            default=None,
            help="Model flavour (default: StageArgs.model, the debug flavour).",
        ),
        click.option(
            "--run",
            "--run-dir",
            "run_dir",
            required=True,
            type=click.Path(path_type=Path),
            help="Run directory (spell it --run-dir under torchrun, whose parser claims --run).",
        ),
        click.option("--seed", type=int, default=None, help="Data and init seed (default: StageArgs.seed)."),
        click.option(
            "--deepspeed-config",
            type=click.Path(exists=True, path_type=Path),
            default=None,
            help="JSON merged over the generated DeepSpeed config.",
        ),
        config_options("train"),
        click.option("--eval/--no-eval", "run_eval", default=None, help="Mini-eval after the stage."),
        click.option(
            "--recipe",
            type=click.Choice(["auto", "debug", "full"]),
            default="auto",
            show_default=True,
            help="auto: the debug twin for --model debug.",
        ),
        click.option("--local_rank", "--local-rank", "local_rank", type=int, default=None, hidden=True),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _args(
    stage,
    shards,
    model,
    run_dir,
    seed,
    deepspeed_config,
    config,
    sets,
    run_eval,
    recipe,
    init=None,
    steps=None,
):
    from accord.train.stage import StageArgs

    return StageArgs(
        stage=stage,
        shards=shards,
        run_dir=run_dir,
        **given({"model": model, "seed": seed, "init": init, "steps": steps, "run_eval": run_eval}),
        debug_recipe=None if recipe == "auto" else recipe == "debug",
        deepspeed_config=json.loads(deepspeed_config.read_text()) if deepspeed_config else None,
        overrides=build_overrides(config, sets, "train", replace=REPLACED_KEYS),
    )


def _setup(local_rank):
    import os

    if local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(local_rank))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from accord.train.stage import set_threads_from_env

    set_threads_from_env()


@click.group(help="Train the ZONOS2-style MoE through pretrain, midtrain, anneal1, anneal2.")
def train() -> None:
    pass


def _make_stage_command(stage: str) -> click.Command:
    @click.command(name=stage, help=f"Run the {stage} stage (resumes from RUN/checkpoints if present).")
    @_common
    @click.option(
        "--init",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help="Previous stage's final/ dir (ZONOS2 layout): weights only.",
    )
    @click.option("--steps", type=int, default=None, help="Override the recipe's step count.")
    @click.option(
        "--stop-after", type=int, default=None, hidden=True, help="Leave after this step (resumable)."
    )
    def cmd(local_rank, stop_after, **options):
        _setup(local_rank)
        from accord.app.evaluation import mini_eval
        from accord.train.stage import run_stage, shutdown

        try:
            args = _args(stage, **options)
            args.stop_after = stop_after
            r = run_stage(args, evaluator=mini_eval)
        finally:
            shutdown()
        click.echo(json.dumps({k: v for k, v in r.items() if k != "logged_losses"}, default=str))

    return cmd


for _stage in STAGES:
    train.add_command(_make_stage_command(_stage))


@train.command(help="All four stages in order, each from the previous stage's final weights.")
@_common
@click.option("--steps-per-stage", type=int, default=None, help="Override every recipe's step count.")
@click.option("--start", type=click.Choice(STAGES), default="pretrain", show_default=True)
@click.option(
    "--init",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Weights for the first stage run (e.g. a pretrain final/ when --start midtrain).",
)
def curriculum(local_rank, steps_per_stage, start, **options):
    _setup(local_rank)
    from accord.app.evaluation import mini_eval
    from accord.train.curriculum import run_curriculum
    from accord.train.stage import shutdown

    try:
        base = _args("pretrain", **options)
        r = run_curriculum(base, steps_per_stage=steps_per_stage, start=start, evaluator=mini_eval)
    finally:
        shutdown()
    click.echo(json.dumps({s: {"final": v.get("final"), "steps": v.get("steps")} for s, v in r.items()}))
