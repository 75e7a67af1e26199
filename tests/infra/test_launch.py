"""Multi-node launch scripts compose commands that the real launchers' argument parsers accept.

``ACCORD_LAUNCH_DRY_RUN=1`` makes the scripts print the command instead of running it; SLURM's
``srun``/``scontrol`` are replaced by tiny shims on PATH (this machine has no SLURM).
"""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from ._infra import INFRA, ROOT

LAUNCH = INFRA / "launch"
TRAIN_ARGS = ["--shards", "/data/shards", "--model", "debug", "--run-dir", "/tmp/run"]


def _accept_train_args(argv: list[str]) -> None:
    """The trainer's own click command parses what the launcher hands each rank (no run: parse only)."""
    from accord.cli.cmd_train import train

    assert argv[0] == "train"
    stage = train.get_command(None, argv[1])
    assert stage is not None, argv[1]
    ctx = stage.make_context(argv[1], list(argv[2:]))
    assert ctx.params["deepspeed_config"].name == f"{argv[1]}.json"


def _dry(script: str, *args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    full = {**os.environ, "ACCORD_LAUNCH_DRY_RUN": "1", **(env or {})}
    return subprocess.run(
        ["bash", str(LAUNCH / script), *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=60
    )


def test_torchrun_command_parses_with_torchrun() -> None:
    from torch.distributed.run import get_args_parser

    out = _dry("torchrun.sh", "midtrain", *TRAIN_ARGS, env={"NNODES": "2", "NPROC_PER_NODE": "4"})
    assert out.returncode == 0, out.stderr
    argv = shlex.split(out.stdout)
    assert argv[0] == "torchrun"
    args = get_args_parser().parse_args(argv[1:])
    assert args.nnodes == "2" and args.nproc_per_node == "4" and args.module
    assert args.training_script == "accord.cli.main"
    assert args.training_script_args[:2] == ["train", "midtrain"]
    assert args.training_script_args[-len(TRAIN_ARGS) :] == TRAIN_ARGS
    _accept_train_args(args.training_script_args)


def test_deepspeed_command_parses_with_the_deepspeed_launcher(tmp_path) -> None:
    from deepspeed.launcher.runner import parse_args

    env_file = tmp_path / ".deepspeed_env"
    out = _dry("deepspeed.sh", "anneal1", *TRAIN_ARGS, env={"DS_ENV_FILE": str(env_file)})
    assert out.returncode == 0, out.stderr
    argv = shlex.split(out.stdout)
    assert argv[0] == "deepspeed"
    args = parse_args(argv[1:])
    assert args.module and args.no_local_rank
    assert args.user_script == "accord.cli.main" and args.user_args[:2] == ["train", "anneal1"]
    assert args.hostfile.endswith("infra/launch/hostfile")
    _accept_train_args(args.user_args)
    forwarded = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert forwarded["ACCORD_DEEPSPEED_CONFIG"].endswith("infra/deepspeed/anneal1.json")


@pytest.mark.parametrize("script", ["torchrun.sh", "deepspeed.sh"])
def test_unknown_stage_is_refused(script, tmp_path) -> None:
    out = _dry(script, "warmup", env={"DS_ENV_FILE": str(tmp_path / "env")})
    assert out.returncode == 2 and "unknown stage" in out.stderr


def test_slurm_script_runs_torchrun_on_every_node(tmp_path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/usr/bin/env bash\nprintf "gpu-a01\\ngpu-a02\\n"\n')
    # srun shim: drop srun's own options, run the task command once (as on one node).
    (bin_dir / "srun").write_text('#!/usr/bin/env bash\nwhile [[ $1 == --* ]]; do shift; done\nexec "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STAGE": "pretrain",
        "ACCORD_TRAIN_ARGS": " ".join(TRAIN_ARGS),
        "SLURM_JOB_NODELIST": "gpu-a[01-02]",
        "SLURM_NNODES": "2",
        "SLURM_JOB_ID": "4242",
        "SLURM_GPUS_ON_NODE": "8",
        "SLURM_SUBMIT_DIR": str(ROOT),  # sbatch runs a spooled copy: the repo is found from the submit dir
    }
    out = _dry("slurm.sbatch", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    argv = shlex.split(out.stdout)
    assert argv[:1] == ["torchrun"]
    assert "--rdzv-endpoint" in argv and argv[argv.index("--rdzv-endpoint") + 1] == "gpu-a01:29400"
    assert argv[argv.index("--nnodes") + 1] == "2" and argv[argv.index("--rdzv-id") + 1] == "4242"
    assert argv[-len(TRAIN_ARGS) :] == TRAIN_ARGS
    _accept_train_args(argv[argv.index("accord.cli.main") + 1 :])
    directives = [
        line for line in (LAUNCH / "slurm.sbatch").read_text().splitlines() if line.startswith("#SBATCH")
    ]
    assert any("--gpus-per-node" in d for d in directives) and any("--nodes" in d for d in directives)


def test_slurm_script_requires_a_stage(tmp_path) -> None:
    out = _dry("slurm.sbatch", env={"STAGE": ""}, cwd=tmp_path)
    assert out.returncode != 0 and "STAGE" in out.stderr
