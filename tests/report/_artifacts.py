"""Small real artifacts of a run, laid out as ``make demo`` leaves them, for the report tests.

The manifest and errors are real CLIP_SCHEMA / ERROR_SCHEMA Parquet files, the run record has the
shape ``accord.core.runs.build_record`` writes, the metrics are JSONL as
``accord.train.metrics.MetricsLogger`` appends them, and the audio is espeak-ng speech.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from accord.core.clip import CLIP_SCHEMA
from accord.core.errors import ERROR_SCHEMA
from accord.core.stages import STAGES

SENTENCE = "The report shows what accord did with the audio."


def _transcript(system: str, model: str, text: str) -> dict:
    return {"system": system, "model": model, "text": text, "normalized": text.lower().strip("."),
            "language": "en", "language_prob": 0.98, "avg_logprob": -0.2}  # fmt: skip


def clip_rows(n: int = 40) -> list[dict]:
    """Clips from clean (high agreement, high SNR) to noisy / disagreeing, all eligibility columns False
    on disk: the report must recompute them from the thresholds in force."""
    rows = []
    for i in range(n):
        q = i / (n - 1)  # 0 = worst, 1 = best
        agreement = round(0.2 + 0.8 * q, 3)
        text = f"sentence number {i} is here"
        other = text if agreement > 0.85 else f"sentence {i} was there"
        rows.append(
            {
                "clip_id": f"clip{i:04d}" + "0" * 12,
                "source_uri": f"file:///bucket/src{i % 4}.wav",
                "source_sha256": "ab" * 32,
                "start_s": float(i * 4),
                "end_s": float(i * 4 + 3),
                "duration_s": 3.0,
                "source_sample_rate": 44100,
                "source_channels": 1,
                "source_duration_s": 60.0,
                "language": "en" if i % 5 else "de",
                "language_prob": 0.6 + 0.39 * q,
                "transcripts": [
                    _transcript("faster-whisper", "whisper:base", text),
                    _transcript("moonshine", "moonshine:tiny-en", other),
                ],
                "pairs": [
                    {
                        "a": "faster-whisper",
                        "b": "moonshine",
                        "wer": 1 - agreement,
                        "cer": (1 - agreement) / 2,
                    }
                ],
                "agreement": agreement,
                "speaking_rate": 12.0,
                "loudness_lufs": -23.0,
                "snr_db": 2.0 + 30.0 * q,
                "bandwidth_hz": 2500.0 + 8000.0 * q,
                "longest_pause_s": 0.2,
                "leading_silence_s": 0.1,
                "trailing_silence_s": 0.1,
                "n_asr": 2,
                "hallucinated": False,
                "language_check": "agrees",  # the text identifier confirms the language
                "dnsmos_ovrl": 1.5 + 2.4 * q,
                "speaker_consistency": 0.7 + 0.25 * q,
                "speaker_split_sim": 0.6 + 0.35 * q,
                **{f"eligible_{s}": False for s in STAGES},
                "run_id": "20261122T000000Z-abcdef",
            }
        )
    return rows


def espeak_wav(path: Path, text: str = SENTENCE) -> Path:
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, timeout=60)
    return path


def make_run(root: Path) -> dict:
    """A run dir: ingest/ (manifest, errors, runs), shards/, train/<stage>/ (metrics, eval), synth.wav."""
    ingest = root / "ingest"
    (ingest / "manifest").mkdir(parents=True)
    (ingest / "errors").mkdir()
    (ingest / "runs").mkdir()
    rows = clip_rows()
    manifest = pa.Table.from_pylist(rows, schema=CLIP_SCHEMA)
    pq.write_table(manifest, ingest / "manifest" / "part-000000.parquet")
    run_id = "20261122T000000Z-abcdef"
    errors = [
        {"input_uri": "file:///bucket/broken.mp3", "clip_id": None, "step": "decode",
         "error_type": "corrupt_file", "reason": "invalid data in input", "run_id": run_id},
        {"input_uri": "file:///bucket/empty.wav", "clip_id": None, "step": "decode",
         "error_type": "empty_file", "reason": "0 bytes", "run_id": run_id},
    ]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(errors, schema=ERROR_SCHEMA), ingest / "errors" / "part-0.parquet")
    record = {
        "run_id": "20261122T000000Z-abcdef",
        "kind": "ingest",
        "status": "complete",
        "counts": {"sources": 6, "sources_failed": 2},
        "timings_s": {"total": 42.5},
        "results": {
            "sources_committed": 4,
            "clips": len(rows),
            "hours_in": 4 * 60.0 / 3600,
            "hours_clipped": len(rows) * 3.0 / 3600,
            "hours_kept": {"all": {"en": 0.02}, "pretrain": {"en": 0.02}},
            "errors_by_reason": {"corrupt_file": 1, "empty_file": 1},
        },
    }
    (ingest / "runs" / "20261122T000000Z-abcdef.json").write_text(json.dumps(record))

    shards = root / "shards"
    shards.mkdir()
    index = {"shard": ["shard-000000"], "n_samples": [30], "n_errors": [0], "bytes": [123456],
             "seconds": [90.0], **{f"n_{s}": [30 - 5 * i] for i, s in enumerate(STAGES)},
             **{f"hours_{s}": [(30 - 5 * i) * 3 / 3600] for i, s in enumerate(STAGES)}}  # fmt: skip
    pq.write_table(pa.table(index), shards / "index.parquet")
    (shards / "tokenize.json").write_text(json.dumps({"codec_frame_rate": 86.13, "speaker_dim": 192}))

    train = root / "train"
    for k, stage in enumerate(STAGES):
        d = train / stage
        d.mkdir(parents=True)
        lines = []
        for step in range(1, 21):
            loss = 8.0 - k - 3.0 * (1 - math.exp(-step / 6))
            lines.append(json.dumps({"step": step, "loss": loss, "nll/cb0": loss + 0.3, "nll/cb1": loss - 0.2,
                                     "lr/muon": 5e-3, "grad_norm": 1.0 / step}))  # fmt: skip
        if stage == "midtrain":
            lines.append('{"step": 21, "loss": 4.')  # a line cut short by a killed run
        (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        # The shape accord.app.evaluation.mini_eval reports (the trainer writes it).
        evaluation = {
            "checkpoint": str(d / "final"), "stage": stage, "asr": "whisper:base", "n": 1,
            "wer": 1.0 - 0.1 * k, "speaker_similarity": 0.1 * k, "seconds": 3.2,
            "items": [{"text": SENTENCE, "hypothesis": "the report", "wer": 0.8, "seconds": 2.0}],
            "note": "debug-scale model: numbers are not meaningful, the pipeline is",
        }  # fmt: skip
        (d / "eval.json").write_text(json.dumps(evaluation))
        (d / "config.json").write_text(json.dumps({"stage": stage}))
        (d / "final").mkdir()
        (d / "final" / "params.json").write_text("{}")
    espeak_wav(root / "synth.wav")
    return {"rows": rows, "n_errors": len(errors)}
