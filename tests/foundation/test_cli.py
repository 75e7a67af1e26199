"""The ``accord`` command: every verb is there, ``doctor`` reports what resolves offline, and a
job command's config comes from its dataclass, ``--config``, its named flags and ``--set``."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from accord.cli.cmd_ingest import submit_args
from accord.cli.main import COMMANDS, cli
from accord.core.config import load_config
from accord.pipeline.job.config import IngestConfig
from accord.tokenize.config import TokenizeConfig

VERBS = {"ingest", "manifest", "tokenize", "train", "synth", "doctor"}


def test_user_verbs_are_commands() -> None:
    assert set(COMMANDS) >= VERBS
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for verb in VERBS:
        assert verb in result.output
        sub = CliRunner().invoke(cli, [verb, "--help"])
        assert sub.exit_code == 0, (verb, sub.output, sub.exception)


def test_doctor_reports_models_offline() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "accord.cli.main", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    models = {m["ref"]: m for m in report["models"]}
    for ref in ("whisper:base", "whisper:tiny.en", "moonshine:tiny-en", "silero-vad"):
        assert models[ref]["available"], ref
    for ref in ("dac:44khz", "ecapa:voxceleb"):
        assert not models[ref]["available"]
        assert "architecture available" in models[ref]["note"]
    for pkg in ("torch", "torchaudio", "ray", "deepspeed", "nemo-toolkit"):
        assert report["versions"][pkg], pkg
    assert report["devices"]["cpu_count"] >= 1


def test_doctor_ray_unreachable_address() -> None:
    result = CliRunner().invoke(cli, ["doctor", "--address", "127.0.0.1:9"])
    assert result.exit_code == 0
    assert "UNREACHABLE" in result.output


def test_ingest_config_file_flags_and_sets(tmp_path) -> None:
    """``accord ingest --config`` reads its ``ingest:`` section; named flags override the file and
    ``--set`` overrides both (seen in the dry run's estimate: its ASR steps and CPUs)."""
    raw = tmp_path / "raw"
    raw.mkdir()
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("ingest:\n  asr: moonshine\n  num_cpus: 1\ntokenize:\n  min_stage: anneal1\n")
    base = [
        "ingest",
        str(raw),
        "--out",
        str(tmp_path / "out"),
        "--dry-run",
        "--json",
        "--config",
        str(run_yaml),
    ]

    def estimates(*extra: str) -> dict:
        r = CliRunner().invoke(cli, [*base, *extra])
        assert r.exit_code == 0, r.output
        return json.loads(r.output)["estimates"]

    est = estimates()
    signals = {"lid", "dnsmos", "speaker_consistency"}
    assert set(est["core_seconds_by_step"]) == {"decode+vad", "moonshine", *signals} and est["cpus"] == 1
    est = estimates("--num-cpus", "2", "--asr", "faster-whisper", "--set", "signals=dnsmos")
    assert set(est["core_seconds_by_step"]) == {"decode+vad", "faster-whisper", "dnsmos"} and est["cpus"] == 2
    assert estimates("--num-cpus", "2", "--set", "num_cpus=3")["cpus"] == 3
    assert estimates("--set", "ingest.num_cpus=4")["cpus"] == 4


def test_ingest_config_errors_are_usage_errors(tmp_path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    base = ["ingest", str(raw), "--out", str(tmp_path / "out"), "--dry-run"]
    r = CliRunner().invoke(cli, [*base, "--set", "asr_batchsize=3"])
    assert r.exit_code == 2 and "ingest.asr_batchsize" in r.output and "asr_batch_size" in r.output
    r = CliRunner().invoke(cli, [*base, "--set", "tokenize.min_stage=anneal1"])
    assert r.exit_code == 2 and "--tokenize" in r.output, "a tokenize key needs the tokenize stage"
    r = CliRunner().invoke(cli, [*base, "--tokenize", str(tmp_path / "s"), "--set", "tokenize.min_stage=x"])
    assert r.exit_code == 2 and "unknown stage" in r.output
    assert not (tmp_path / "out").exists()


def test_submitted_ingest_carries_its_resolved_configs(tmp_path) -> None:
    """With --address the job runs ``accord ingest`` with the configs resolved on the client
    (file, flags and --set), as data: the job's command gives the same run."""

    raw = tmp_path / "raw"
    raw.mkdir()
    cfg = load_config(IngestConfig, sets=["asr=moonshine", "num_cpus=5", "asr_models.moonshine=m:x"])
    tok = load_config(TokenizeConfig, sets=["min_stage=anneal1", "codec.ref=dac:random"])
    args = submit_args(str(raw), str(tmp_path / "out"), None, str(tmp_path / "s"), cfg, tok, True)
    assert "--address" not in args and args[args.index("--tokenize") + 1] == str(tmp_path / "s")
    r = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert r.exit_code == 0, r.output
    est = json.loads(r.output)["estimates"]
    assert est["cpus"] == 5
    signals = {"lid", "dnsmos", "speaker_consistency"}
    assert set(est["core_seconds_by_step"]) == {"decode+vad", "moonshine", *signals}
    resolved = json.loads(args[args.index("--config-json") + 1])
    assert load_config(IngestConfig, flags=resolved["ingest"]) == cfg
    assert load_config(TokenizeConfig, flags=resolved["tokenize"]) == tok
