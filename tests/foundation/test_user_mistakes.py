"""A user's mistake is one line on stderr naming the problem and the fix, exit status 2, and
nothing written: no traceback, no empty output or run dir (``accord.cli.main.LazyGroup``).

Every case fails before any work (no Ray, no model), so each runs in-process in well under a
second once the modules are imported.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from accord.cli.main import cli


def mistake(args: list[str], *needles: str) -> str:
    """Run ``accord args``; assert the one-line exit-2 error holding ``needles``; return it."""
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    line = r.stderr.strip()
    assert line.startswith("accord: error: ") and "\n" not in line, r.output
    assert "Traceback" not in r.output and not r.stdout, r.output
    for needle in needles:
        assert needle in line, line
    return line


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    (tmp_path / "raw").mkdir()
    return tmp_path / "raw"


@pytest.mark.parametrize("dry", [True, False])
def test_missing_raw_path(tmp_path: Path, dry: bool) -> None:
    out = tmp_path / "out"
    extra = ["--dry-run"] if dry else []
    mistake(["ingest", str(tmp_path / "nope"), "--out", str(out), *extra], "input not found", "RAW_URI")
    assert not out.exists()


@pytest.mark.parametrize("dry", [True, False])
def test_out_is_a_file(raw: Path, tmp_path: Path, dry: bool) -> None:
    out = tmp_path / "out.txt"
    out.write_text("mine")
    extra = ["--dry-run"] if dry else []
    mistake(["ingest", str(raw), "--out", str(out), *extra], "is a file", "pass a folder")
    assert out.read_text() == "mine"


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "not found"), ("a: [1,\n  b: {", "not valid YAML"), ("just a string", "expected a mapping"),
     ("anneal3: {min_snr_db: 3}", "did you mean 'anneal2'")],
)  # fmt: skip
def test_bad_thresholds_file(tmp_path: Path, content: str | None, needle: str) -> None:
    path = tmp_path / "th.yaml"
    if content is not None:
        path.write_text(content)
    args = ["manifest", "stats", str(tmp_path / "ingest"), "--thresholds", str(path)]
    mistake(args, f"thresholds file {path}", needle, "stage -> thresholds")


def test_unknown_manifest_stage(tmp_path: Path) -> None:
    mistake(["manifest", "stats", str(tmp_path), "--stage", "anneal3"], "'anneal3' is not one of")


@pytest.mark.parametrize(
    ("sets", "needles"),
    [
        ("eligibility.anneal3.min_snr_db=3", ("eligibility.anneal3", "unknown stage", "'anneal2'")),
        ("eligibility.anneal1.min_snr=3", ("eligibility.anneal1", "unknown threshold", "'min_snr_db'")),
        ("eligibility.anneal1.min_snr_db=loud", ("eligibility.anneal1", "expected a number")),
        ("steps.vda.pad_s=0.1", ("steps.vda", "unknown step", "'vad'")),
        ("steps.asr:moonshine.treads=1", ("steps.asr:moonshine", "['treads']", "'threads'")),
        ("signals=lid,dnsmoss", ("signals", "'dnsmoss'", "'dnsmos'")),
    ],
)
def test_ingest_config_typos_fail_up_front(raw: Path, tmp_path: Path, sets: str, needles) -> None:
    """The whole ingest config is checked on the driver before any work, the dry run included
    (before, these passed the plan and failed in a Ray post task, or not at all)."""
    out = tmp_path / "out"
    mistake(["ingest", str(raw), "--out", str(out), "--dry-run", "--set", sets], *needles)
    mistake(["ingest", str(raw), "--out", str(out), "--set", sets], *needles)
    assert not out.exists()


def test_bad_train_set(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "pretrain", "--shards", str(tmp_path), "--run", str(run), "--no-eval"]
    mistake([*args, "--set", "data.max_framez=64"], "data.max_framez", "'max_frames'")
    assert not run.exists()


def test_train_on_an_interrupted_tokenize(tmp_path: Path) -> None:
    """A tokenize that never finished (no samples.parquet / index.parquet): refused before the
    run dir exists (it used to leave an empty checkpoints/ and a FileNotFoundError)."""
    shards = tmp_path / "shards"
    (shards / "shards").mkdir(parents=True)
    (shards / "shards" / "shard-000000.tar").write_bytes(b"")
    run = tmp_path / "run"
    args = ["train", "pretrain", "--shards", str(shards), "--run", str(run), "--no-eval"]
    mistake(args, "samples.parquet", "accord tokenize")
    mistake([*args[:3], str(tmp_path / "nope"), *args[4:]], "not found")
    assert not run.exists()


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS"])
def test_a_refused_write_is_one_line_naming_the_file(monkeypatch, code: str) -> None:
    """A run stopped by its storage (disk full, read-only) says so on one line, exit 1."""
    import errno

    import click

    from accord.cli.main import LazyGroup

    def full_disk() -> None:
        raise OSError(getattr(errno, code), "refused", "/data/out/manifest/.tmp-part-a.parquet")

    monkeypatch.setattr(
        LazyGroup, "get_command", lambda self, ctx, name: click.Command(name, callback=full_disk)
    )
    r = CliRunner().invoke(cli, ["ingest"])
    line = r.stderr.strip()
    assert r.exit_code == 1 and "\n" not in line and "Traceback" not in r.output, r.output
    assert line.startswith("accord: error: ") and "/data/out/manifest/.tmp-part-a.parquet" in line, line
