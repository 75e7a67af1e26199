"""The user's whole journey on a slice of the sample bucket, through the real CLI.

ingest (local Ray, both ASR systems) with tokenize as its opt-in last stage (seeded random DAC
weights, opted in and recorded: no trained DAC ships offline) -> shards -> the
four-stage curriculum on the debug model -> synth. Checks lineage: every training sample leads
back to its manifest row, its source file and the seconds of speech the truth file names.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FILES = ["en_flite_slt.flac", "en_espeak_us.wav"]
FRAME_RATE = 44100 / 512


def _accord(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "accord.cli.main", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, f"accord {' '.join(args)}\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out


def _samples(shards: Path) -> dict[str, dict]:
    """clip id -> {json, codes} read straight from the WebDataset tars."""
    found: dict[str, dict] = {}
    for tar_path in sorted((shards / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                data = tar.extractfile(member).read()
                entry = found.setdefault(key, {})
                if ext == "json":
                    entry["json"] = json.loads(data)
                elif ext == "codes.npy":
                    entry["codes"] = np.load(io.BytesIO(data))
    return found


def test_ingest_tokenize_train_synth_with_lineage(sample_bucket, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(FILES) + "\n")
    out, shards, run = tmp_path / "ingest", tmp_path / "shards", tmp_path / "run"
    _accord(
        "ingest", str(sample_bucket.path), "--out", str(out), "--list", str(listing), "--num-cpus", "2",
        "--no-progress", "--tokenize", str(shards), "--tokenize-opts", "--speaker ecapa:auralis",
        "--allow-random-weights",  # no trained DAC ships offline: the explicit, recorded opt-in
    )  # fmt: skip
    tokenize_meta = json.loads((shards / "tokenize.json").read_text())
    assert tokenize_meta["random_weights"] == ["dac:random"] and tokenize_meta["codec"]["ref"] == "dac:random"
    index = pd.read_parquet(shards / "index.parquet")
    assert all(list(refs) == ["dac:random"] for refs in index["random_weights"])

    manifest = pd.read_parquet(out / "manifest").set_index("clip_id")
    assert {Path(u).name for u in manifest["source_uri"]} == set(FILES)
    samples = _samples(shards)
    eligible = manifest[manifest["eligible_pretrain"]]
    assert len(eligible) > 0 and set(samples) == set(eligible.index), "every eligible clip, exactly once"

    for clip_id, sample in samples.items():
        meta, row = sample["json"], manifest.loc[clip_id]
        # Lineage: sample -> manifest row -> source file -> seconds of true speech.
        assert meta["source_uri"] == row["source_uri"]
        assert meta["start_s"] == pytest.approx(row["start_s"])
        assert meta["end_s"] == pytest.approx(row["end_s"])
        assert meta["source_sha256"] == row["source_sha256"]
        truth = sample_bucket.truth[Path(meta["source_uri"]).name]["sentences"]
        overlap = max(min(meta["end_s"], s["end_s"]) - max(meta["start_s"], s["start_s"]) for s in truth)
        assert overlap > 0.5, f"{clip_id} covers no true sentence"
        assert {t["system"] for t in meta["transcripts"]} >= {"faster-whisper", "moonshine"}
        codes = sample["codes"]
        assert codes.dtype == np.int16 and codes.shape[0] == 9
        assert abs(codes.shape[1] - round((meta["end_s"] - meta["start_s"]) * FRAME_RATE)) <= 1

    _accord("tokenize", "fit-lda", str(shards))
    _accord("train", "curriculum", "--shards", str(shards), "--model", "debug", "--run", str(run),
            "--steps-per-stage", "3", "--no-eval")  # fmt: skip
    for stage in ("pretrain", "midtrain", "anneal1", "anneal2"):
        final = run / stage / "final"
        assert (final / "params.json").is_file() and (final / "model.pth").is_file()
        assert (run / stage / "config.json").is_file()

    wav = tmp_path / "hello.wav"
    ref = sample_bucket.path / FILES[0]
    _accord("synth", str(run / "anneal2" / "final"), "Hello.", "--speaker", str(ref), "--max-seconds", "1",
            "--out", str(wav))  # fmt: skip
    audio, sr = sf.read(wav)
    assert sr == 44100 and 0 < len(audio) <= 1.2 * sr and np.isfinite(audio).all()
