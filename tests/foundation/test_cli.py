"""The ``accord`` command: every verb is there, and ``doctor`` reports what resolves offline."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from accord.cli.main import COMMANDS, cli

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
