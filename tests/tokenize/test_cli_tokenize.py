"""``accord tokenize MANIFEST --out SHARDS`` routes to ``run``; subcommands stay reachable."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from accord.tokenize.sample_manifest import clip_row, write_manifest
from click.testing import CliRunner

from accord.cli.main import cli
from accord.stages import STAGES


def test_default_run_with_nothing_eligible(tmp_path) -> None:
    row = clip_row(str(tmp_path / "a.wav"), 0.0, 1.0, "x", "en", eligible=dict.fromkeys(STAGES, False))
    manifest = write_manifest([row], tmp_path / "ingest")
    out = tmp_path / "shards"
    r = CliRunner().invoke(cli, ["tokenize", str(manifest), "--out", str(out), "--local", "--no-reapply"])
    assert r.exit_code == 0, r.output
    assert "0 clips in 0 shards" in r.output
    assert pq.read_table(out / "index.parquet").num_rows == 0
    runs = list((out / "runs").glob("*.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text())["n_clips"] == 0


def test_help_lists_subcommands_and_bad_stage_fails(tmp_path) -> None:
    r = CliRunner().invoke(cli, ["tokenize", "--help"])
    assert r.exit_code == 0 and all(c in r.output for c in ("run", "fit-lda", "decode"))
    manifest = write_manifest([clip_row("/x.wav", 0.0, 1.0, "x", "en")], tmp_path / "ingest")
    r = CliRunner().invoke(
        cli, ["tokenize", str(manifest), "--out", str(tmp_path / "s"), "--min-stage", "bogus", "--local"]
    )
    assert r.exit_code == 2 and "bogus" in r.output and "pretrain" in r.output
