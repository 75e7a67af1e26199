"""The one definition of the clip manifest and errors manifest schemas (versioned).

Every ingest writes rows of ``CLIP_SCHEMA`` to ``OUT/manifest/`` and rows of
``ERROR_SCHEMA`` to ``OUT/errors/``; ``manifest``, ``tokenize`` and ``train`` read them
back. Bump ``SCHEMA_VERSION`` on any change and keep readers able to read the previous
version. The version is stored in each Parquet file's key-value metadata.
"""

from __future__ import annotations

import pyarrow as pa

from accord.stages import STAGES

SCHEMA_VERSION = 1

TRANSCRIPT_TYPE = pa.struct(
    [
        ("system", pa.string()),  # backend name, e.g. "faster-whisper"
        ("model", pa.string()),  # model reference, e.g. "whisper:base"
        ("text", pa.string()),  # raw transcript as the system produced it
        ("normalized", pa.string()),  # after the language-appropriate normaliser
        ("language", pa.string()),  # ISO 639-1 code or "" when the system does not say
        ("language_prob", pa.float32()),  # NaN when unknown
        ("avg_logprob", pa.float32()),  # NaN when unknown
    ]
)

PAIR_TYPE = pa.struct(
    [
        ("a", pa.string()),
        ("b", pa.string()),
        ("wer", pa.float32()),
        ("cer", pa.float32()),
    ]
)

FEATURE_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("speaking_rate", pa.float32()),  # UTF-8 bytes/s of the transcript without punctuation/space
    ("loudness_lufs", pa.float32()),
    ("snr_db", pa.float32()),
    ("bandwidth_hz", pa.float32()),
    ("longest_pause_s", pa.float32()),
    ("leading_silence_s", pa.float32()),
    ("trailing_silence_s", pa.float32()),
)

CLIP_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),  # stable: hash of source URI + offsets
        ("source_uri", pa.string()),
        ("source_sha256", pa.string()),  # of the source file bytes; lineage + change detection
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("source_sample_rate", pa.int32()),
        ("source_channels", pa.int16()),
        ("source_duration_s", pa.float64()),
        ("language", pa.string()),  # consensus language ("" if unknown)
        ("language_prob", pa.float32()),
        ("transcripts", pa.list_(TRANSCRIPT_TYPE)),
        ("pairs", pa.list_(PAIR_TYPE)),
        ("agreement", pa.float32()),  # see accord.pipeline agreement docs: 1 - mean pairwise error
        *FEATURE_FIELDS,
        *((f"eligible_{s}", pa.bool_()) for s in STAGES),
        ("run_id", pa.string()),
    ],
    metadata={"accord.schema": "clip", "accord.schema_version": str(SCHEMA_VERSION)},
)

ERROR_SCHEMA = pa.schema(
    [
        ("input_uri", pa.string()),
        ("clip_id", pa.string()),  # null when the whole input failed
        ("step", pa.string()),  # e.g. "decode", "vad", "asr:moonshine", "tokenize:dac"
        ("error_type", pa.string()),  # exception class or a short code, e.g. "empty_file"
        ("reason", pa.string()),  # human-readable, never contains credentials
        ("run_id", pa.string()),
    ],
    metadata={"accord.schema": "error", "accord.schema_version": str(SCHEMA_VERSION)},
)

ELIGIBILITY_COLUMNS: tuple[str, ...] = tuple(f"eligible_{s}" for s in STAGES)
