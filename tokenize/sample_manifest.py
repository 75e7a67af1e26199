"""A clip manifest built from a generated sample bucket's truth spans (tests, benchmarks, demos).

Real runs tokenize the manifest ``accord ingest`` writes; this builds the same CLIP_SCHEMA rows
straight from the bucket's known sentences, so the tokenize stage can be exercised on real
audio files without running ingest first. Transcripts are the truth text (system "truth").
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from accord.core.clip import CLIP_SCHEMA, FEATURE_FIELDS, QUALITY_FIELDS
from accord.core.stages import STAGES


def clip_id_for(source_uri: str, start_s: float, end_s: float) -> str:
    return hashlib.sha256(f"{source_uri}|{start_s:.3f}|{end_s:.3f}".encode()).hexdigest()[:20]


def clip_row(
    source_uri: str,
    start_s: float,
    end_s: float,
    text: str,
    language: str,
    eligible: dict[str, bool] | None = None,
    features: dict[str, float] | None = None,
    source_sha256: str = "",
    run_id: str = "sample",
) -> dict[str, Any]:
    """One CLIP_SCHEMA row with a single "truth" transcript."""
    # Generated TTS is clean, full-band and tightly cut: features that pass every default stage.
    feats = {name: math.nan for name, _ in (*FEATURE_FIELDS, *QUALITY_FIELDS)}
    feats.update(
        {
            "speaking_rate": len(text.replace(" ", "").encode()) / max(end_s - start_s, 1e-3),
            "snr_db": 40.0,
            "bandwidth_hz": 16000.0,
            "loudness_lufs": -23.0,
            "longest_pause_s": 0.2,
            "leading_silence_s": 0.1,
            "trailing_silence_s": 0.1,
        }
    )
    # Stand-ins for what ingest measures on such a clip (tests/pipeline_job asserts the measured
    # values): one clean voice, the truth text counting as two agreeing systems, its text in the
    # clip's language, and the clip in its source's language.
    feats.update(
        {
            "dnsmos_sig": 3.5,
            "dnsmos_bak": 4.0,
            "dnsmos_ovrl": 3.2,
            "dnsmos_p808": 3.6,
            "speaker_consistency": 0.9,
            "speaker_split_sim": 0.9,
            "speaker_change_s": math.nan,
        }
    )
    feats.update(features or {})
    elig = {s: True for s in STAGES} | (eligible or {})
    transcript = {
        "system": "truth",
        "model": "sample-bucket",
        "text": text,
        "normalized": text.lower(),
        "language": language,
        "language_prob": 1.0,
        "avg_logprob": math.nan,
        "text_language": language,
        "text_language_prob": 1.0,
    }
    return {
        "clip_id": clip_id_for(source_uri, start_s, end_s),
        "source_uri": source_uri,
        "source_sha256": source_sha256,
        "start_s": float(start_s),
        "end_s": float(end_s),
        "duration_s": float(end_s - start_s),
        "source_sample_rate": 0,
        "source_channels": 1,
        "source_duration_s": math.nan,
        "language": language,
        "language_prob": 1.0,
        "language_scores": [{"language": language, "prob": 1.0}],
        "language_check": "agrees",
        "source_language": language,
        "transcripts": [transcript],
        "pairs": [],
        "agreement": 1.0,
        "n_asr": 2,
        "hallucinated": False,
        **feats,
        **{f"eligible_{s}": bool(v) for s, v in elig.items()},
        "run_id": run_id,
    }


def rows_from_bucket(
    bucket: Any,
    files: list[str] | None = None,
    per_file: int = 2,
    max_seconds: float | None = None,
) -> list[dict[str, Any]]:
    """Rows for the first ``per_file`` sentences of each speech file (optionally cut to ``max_seconds``)."""
    rows = []
    for name, truth in sorted(bucket.truth.items()):
        if files is not None and name not in files:
            continue
        for sent in (truth.get("sentences") or [])[:per_file]:
            start, end = float(sent["start_s"]), float(sent["end_s"])
            rate = len(sent["text"].replace(" ", "").encode()) / max(
                end - start, 1e-3
            )  # of the whole sentence
            if max_seconds is not None:
                end = min(end, start + max_seconds)
            uri = str(Path(bucket.path) / name)
            lang = sent.get("language") or ""
            rows.append(clip_row(uri, start, end, sent["text"], lang, features={"speaking_rate": rate}))
            rows[-1]["voice"] = sent.get("voice")
    return rows


def write_manifest(rows: list[dict[str, Any]], out_dir: str | Path) -> Path:
    """Write ``rows`` as ``out_dir/manifest/part-0.parquet`` (an ingest-style output dir)."""
    out = Path(out_dir) / "manifest"
    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{k: r.get(k) for k in CLIP_SCHEMA.names} for r in rows], schema=CLIP_SCHEMA)
    pq.write_table(table, out / "part-0.parquet")
    return Path(out_dir)
