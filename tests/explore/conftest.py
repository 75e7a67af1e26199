"""An ingest output over the generated sample bucket, written by the manifest's own writer.

Each sentence of each speech file of ``accord.samples.make_bucket`` becomes one clip whose span
is the sentence's, so the explorer plays real audio (WAV, FLAC, MP3, Ogg, ...); its signals
spread over every stage's thresholds so that each gate keeps some clips and fails others, with
NaN, single-system, hallucinated and off-source clips among them. Written through
:class:`accord.core.manifest.ManifestStore` exactly as an ingest commits a source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from accord.core.errors import error_row
from accord.core.manifest import ManifestStore, Source, source_key, to_row

RUN_ID = "20260101T000000Z-explor"


@dataclass
class Output:
    path: Path
    n_clips: int
    n_errors: int


def _transcript(system: str, text: str, language: str) -> dict:
    return {"system": system, "model": f"{system}:test", "text": text, "normalized": text.lower(),
            "language": language, "language_prob": 0.9, "flags": [], "text_language": language,
            "text_language_prob": 0.95}  # fmt: skip


def clip_rows(uri: str, truth: dict, first: int) -> list[dict]:
    rows = []
    for j, sentence in enumerate(truth["sentences"]):
        i = first + j
        text = sentence["text"]
        words = text.split()
        other = " ".join(["different", *words[1:]]) if i % 3 == 1 else text
        n_asr = 1 if i % 7 == 3 else 2
        language = sentence.get("language") or truth["language"]
        rows.append(
            to_row(
                {
                    "clip_id": f"{source_key(uri)[:12]}{j:04d}",
                    "source_uri": uri,
                    "source_sha256": "0" * 64,
                    "start_s": sentence["start_s"],
                    "end_s": sentence["end_s"],
                    "duration_s": sentence["end_s"] - sentence["start_s"],
                    "source_sample_rate": truth["sample_rate"],
                    "source_channels": truth["channels"],
                    "source_duration_s": truth["duration_s"],
                    "language": language,
                    "language_prob": 0.55 if i % 11 == 5 else 0.95,
                    "language_check": "agrees" if i % 5 else "unverified",
                    "source_language": truth["language"],
                    "transcripts": [_transcript("whisper", text, language)]
                    + ([_transcript("moonshine", other, language)] if n_asr == 2 else []),
                    "pairs": [{"a": "whisper", "b": "moonshine", "wer": 0.0 if other == text else 0.3}]
                    if n_asr == 2
                    else [],
                    "agreement": (1.0 if other == text else 0.7) if n_asr == 2 else math.nan,
                    "n_asr": n_asr,
                    "hallucinated": i % 13 == 12,
                    "speaking_rate": 14.0,
                    "snr_db": 4.0 + 3.0 * (i % 10),
                    "bandwidth_hz": 7000.0,
                    "leading_silence_s": 0.1,
                    "trailing_silence_s": 0.1 + 0.1 * (i % 8),
                    "dnsmos_ovrl": math.nan if i % 9 == 4 else 2.4 + 0.15 * (i % 8),
                    "speaker_consistency": 0.7 + 0.05 * (i % 6),
                    "speaker_split_sim": 0.8,
                },
                run_id=RUN_ID,
            )
        )
    return rows


def build_output(out: Path) -> Output:
    from accord.samples import make_bucket

    bucket = make_bucket()
    store = ManifestStore(str(out))
    n_clips = n_errors = 0
    for name, truth in sorted(bucket.truth.items()):
        path = Path(bucket.path) / name
        uri = str(path)
        source = Source.make(uri, path.stat().st_size, f"{path.stat().st_size}")
        if truth["has_speech"] and truth["sentences"]:
            rows, errors = clip_rows(uri, truth, n_clips), []
        else:
            rows, errors = [], [error_row(uri, "vad", "no_speech", "no speech found in the file", RUN_ID)]
        store.commit(source, rows, errors, RUN_ID)
        n_clips += len(rows)
        n_errors += len(errors)
    return Output(out, n_clips, n_errors)


@pytest.fixture(scope="session")
def explore_out(tmp_path_factory) -> Output:
    return build_output(tmp_path_factory.mktemp("explore") / "ingest")
