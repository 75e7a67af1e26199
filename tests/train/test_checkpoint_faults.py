"""Checkpoint faults (#22): a truncated file in the newest checkpoint, an empty ``latest``, no
good checkpoint at all, a save that fails. The trainer resumes from the newest good checkpoint
with one line naming the bad file, and trains on exactly as a clean resume from that step would;
with none good it stops on one line naming the files; a failed save leaves no temp file behind.
In this process, on the debug model (``test_trainer``'s settings), from one pair of checkpoints."""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from accord.core.storage import TEMP_PREFIX, host_tag
from accord.train import checkpoint as ckpt
from accord.train.trainer import Trainer

from .test_trainer import one_step, stage_args

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("trainer_process")]

MODEL = "mp_rank_00_model_states.pt"
TRAINER = "trainer_rank0.pt"


@dataclass
class Saved:
    run: Path
    ahead: float  # the loss of step 2 after the step-1 checkpoint, uninterrupted


@pytest.fixture(scope="module")
def saved(synthetic_shards: Path, tmp_path_factory) -> Saved:
    """Checkpoints at steps 1 and 2 of one run, and the loss between them (step 2's depends on
    the weights, the optimizer state and the data position the step-1 checkpoint holds)."""
    run = tmp_path_factory.mktemp("faults") / "run"
    a = Trainer(stage_args(synthetic_shards, run))
    one_step(a)
    a.checkpoint()
    ahead = one_step(a)
    a.checkpoint()
    return Saved(run, ahead)


def copy_run(saved: Saved, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(saved.run, run)
    return run


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def fallback_line(caplog: pytest.LogCaptureFixture) -> str:
    lines = [
        r.getMessage() for r in caplog.records if r.name == ckpt.__name__ and r.levelno == logging.WARNING
    ]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("name", [MODEL, TRAINER])
def test_a_truncated_file_falls_back_to_the_previous_checkpoint_exactly(
    saved: Saved, tmp_path: Path, synthetic_shards: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    run = copy_run(saved, tmp_path)
    bad = run / "checkpoints" / ckpt.tag_for(2) / name
    truncate(bad)
    with caplog.at_level(logging.WARNING, logger=ckpt.__name__):
        b = Trainer(stage_args(synthetic_shards, run))
    line = fallback_line(caplog)
    assert str(bad) in line and ckpt.tag_for(1) in line and "step 1" in line, line
    assert b.step == 1
    assert one_step(b) == saved.ahead  # as a clean resume from step 1 (bit-identical on the CPU)


def test_an_empty_latest_resumes_from_the_newest_good_checkpoint(
    saved: Saved, tmp_path: Path, synthetic_shards: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """... and the temp file of a writer killed mid-save goes (storage's sweep rule)."""
    run = copy_run(saved, tmp_path)
    (run / "checkpoints" / "latest").write_text("")  # DeepSpeed's own writer, killed mid-write
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = run / "checkpoints" / ckpt.tag_for(2) / f"{TEMP_PREFIX}{host_tag()}.{dead.pid}.0a-{TRAINER}"
    leftover.write_bytes(b"half")
    with caplog.at_level(logging.WARNING, logger=ckpt.__name__):
        b = Trainer(stage_args(synthetic_shards, run))
    line = fallback_line(caplog)
    assert "latest is empty" in line and ckpt.tag_for(2) in line and "step 2" in line, line
    assert b.step == 2 and not leftover.exists()


def test_no_good_checkpoint_stops_on_one_line_naming_the_files(
    saved: Saved, tmp_path: Path, synthetic_shards: Path
) -> None:
    run = copy_run(saved, tmp_path)
    model2, trainer1 = (
        run / "checkpoints" / ckpt.tag_for(2) / MODEL,
        run / "checkpoints" / ckpt.tag_for(1) / TRAINER,
    )
    truncate(model2)
    trainer1.unlink()
    with pytest.raises(ckpt.CheckpointError) as e:
        Trainer(stage_args(synthetic_shards, run))
    msg = str(e.value)
    assert "\n" not in msg and str(model2) in msg and str(trainer1) in msg and "missing" in msg, msg


def test_a_failed_save_leaves_no_temp_file(tmp_path: Path) -> None:
    """A trainer state that cannot be written (here: not picklable) raises and leaves nothing."""
    ckpt_dir = tmp_path / "checkpoints"
    with pytest.raises(Exception, match="pickle"):
        ckpt.save(None, ckpt_dir, 6, {"position": lambda: 0}, rank=0)
    leftovers = [p.name for p in ckpt_dir.rglob("*") if p.is_file()]
    assert not leftovers, leftovers
