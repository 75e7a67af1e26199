"""A worker process that dies on one source (segfault, OOM kill) must not hang or end the job.

The VAD step is swapped (``step_targets``) for the real one plus a hard ``os._exit`` on one
file, importable by the Ray workers through PYTHONPATH. The job must finish, commit the other
sources, record the poison source as incomplete without a marker, and a re-run with the
normal steps must then complete it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accord.core.manifest import read_errors, read_manifest

pytestmark = pytest.mark.integration

CRASH_MODULE = """
import os

from accord.pipeline.steps.vad import VadStep


class CrashingVad(VadStep):
    def process(self, item):
        if item["source_uri"].endswith("POISON"):
            os._exit(139)  # what a segfault in a native decoder looks like to Ray
        return super().process(item)
"""


def test_worker_crash_is_contained_and_retried(sample_bucket, tmp_path, run_accord, make_env) -> None:
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    poison = "en_flite_kal.wav"
    (mod_dir / "crashing_vad.py").write_text(CRASH_MODULE.replace("POISON", poison))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "ingest:\n"
        "  step_targets: {vad: 'crashing_vad:CrashingVad'}\n"
        "  task_max_retries: 1\n"
        "  asr: [faster-whisper]\n"
    )
    lst = tmp_path / "list.txt"
    lst.write_text(f"en_flite_rms.webm\n{poison}\n")
    out = tmp_path / "out"
    env = make_env(PYTHONPATH=str(mod_dir))
    args = ["ingest", str(sample_bucket.path), "--out", str(out), "--list", str(lst), "--num-cpus", "2"]
    proc = run_accord(*args, "--config", str(cfg), "--no-progress", env=env, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]  # finished, but incomplete
    rec = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert rec["status"] == "incomplete" and rec["counts"]["sources_incomplete"] == 1
    assert {Path(c["source_uri"]).name for c in read_manifest(str(out)).to_pylist()} == {"en_flite_rms.webm"}
    errs = [e for e in read_errors(str(out)).to_pylist() if Path(e["input_uri"]).name == poison]
    assert [(e["step"], e["error_type"]) for e in errs] == [("job", "incomplete")]

    proc = run_accord(*args, "--asr", "faster-whisper", "--no-progress", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {Path(c["source_uri"]).name for c in read_manifest(str(out)).to_pylist()}
    assert names == {"en_flite_rms.webm", poison}
    assert len(read_errors(str(out))) == 0  # the retry replaced the incomplete record
