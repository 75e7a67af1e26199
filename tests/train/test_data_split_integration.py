"""Shard-split reading in a 2-process DeepSpeed run (gloo, CPU): trains, and resumes exactly."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import losses_of, torchrun

pytestmark = pytest.mark.integration


def test_two_process_split_read_trains_and_resumes_exactly(
    synthetic_shards: Path, tmp_path: Path, train_env
) -> None:
    args = ["pretrain", "--shards", str(synthetic_shards), "--model", "debug", "--steps", "4", "--no-eval",
            "--set", "log_every=1", "--set", "ckpt_every=2", "--set", "data.read_mode=split"]  # fmt: skip
    launcher = torchrun(2, port_offset=500)

    def train(run: Path, *extra: str) -> subprocess.CompletedProcess:
        cmd = [*launcher, "-m", "accord.cli.main", "train", *args, "--run-dir", str(run), *extra]
        out = subprocess.run(cmd, env=train_env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-5000:]
        return out

    run = tmp_path / "run"
    train(run)
    ref = losses_of(run)
    io = json.loads((run / "result.json").read_text())["loader"]["io"]
    assert io["read_mode"] == "split" and len(io["ranks"]) == 2
    assert all(r["bytes_read"] > 0 and r["data_wait_s"] >= 0 for r in io["ranks"])
    # killed right after the step-2 checkpoint was published: `latest` names it, step 4 never
    # finished (a tag after `latest` is not resumed from); the re-run re-logs steps 3 and 4
    (run / "checkpoints" / "latest").write_text("step_00000002")
    (run / "result.json").unlink()
    out = train(run)
    assert "resumed from" in out.stderr and "step_00000002" in out.stderr
    assert losses_of(run) == ref and len(ref) == 4  # bit-identical on CPU
