"""The clip: one schema and one shape from manifest row to shard sample to loader row.

Every ingest writes rows of ``CLIP_SCHEMA`` to ``OUT/manifest/``; tokenize copies a clip's row
(without the per-system pairs) into its shard sample's ``json`` member, adding what it
measured (``SAMPLE_FIELDS``), and projects it to ``samples.parquet`` (``SAMPLE_SCHEMA``)
under the same column names; the trainer reads both. Errors are in :mod:`accord.core.errors`.

Bump ``SCHEMA_VERSION`` on any change and keep readers able to read the previous
version (:func:`upgrade_clips`). The version is stored in each Parquet file's key-value metadata.

Version 2 added the quality signals: per transcript its sanity checks (``TRANSCRIPT_CHECKS``,
``flags``), per clip ``n_asr`` (systems that support its language), ``hallucinated``, per-clip
language identification (``language`` / ``language_prob``, no longer one per packed window),
DNSMOS and speaker consistency (``QUALITY_FIELDS``).

Version 3 (real recordings, issue #20): per transcript the language its *text* is in
(``text_language``, ``text_language_prob``: a text identifier's second opinion on the audio
LID); per clip the audio LID's leading languages (``language_scores``, which route ASR), the
verdict of text against audio language (``language_check``), the language of most of its
source's speech (``source_language``), and the ASR systems that failed on the clip
(``asr_failures``: the clip stays, with the systems that did produce text).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from accord.core.stages import STAGES

SCHEMA_VERSION = 3

TRANSCRIPT_TYPE = pa.struct(
    [
        ("system", pa.string()),  # backend name, e.g. "faster-whisper"
        ("model", pa.string()),  # model reference, e.g. "whisper:base"
        ("text", pa.string()),  # raw transcript as the system produced it
        ("normalized", pa.string()),  # after the language-appropriate normaliser
        ("language", pa.string()),  # ISO 639-1 code or "" when the system does not say
        ("language_prob", pa.float32()),  # NaN when unknown
        ("avg_logprob", pa.float32()),  # NaN when unknown
        ("no_speech_prob", pa.float32()),  # Whisper's, NaN when the system gives none
        ("repeat_ratio", pa.float32()),  # share of repeated word n-grams (pipeline/transcript_checks.py)
        ("compression_ratio", pa.float32()),  # UTF-8 bytes / zlib bytes (Whisper's loop detector)
        ("chars_per_s", pa.float32()),  # characters (no spaces) per second of the clip's speech
        ("flags", pa.list_(pa.string())),  # the checks this transcript fails; empty when sane
        ("text_language", pa.string()),  # the language its text is in (pipeline/text_lid.py), "" unknown
        ("text_language_prob", pa.float32()),  # the text identifier's confidence, NaN unknown
    ]
)
TRANSCRIPT_CHECKS: tuple[str, ...] = ("no_speech_prob", "repeat_ratio", "compression_ratio", "chars_per_s")

LANGUAGE_SCORE_TYPE = pa.struct([("language", pa.string()), ("prob", pa.float32())])

ASR_FAILURE_TYPE = pa.struct(
    [
        ("system", pa.string()),  # the system that failed on this clip
        ("error_type", pa.string()),  # exception class
        ("reason", pa.string()),
    ]
)

# ``language_check``: what the transcripts' text language says of the clip's (audio) language.
LANGUAGE_AGREES, LANGUAGE_DIFFERS, LANGUAGE_UNVERIFIED = "agrees", "differs", "unverified"
LANGUAGE_CHECKS: tuple[str, ...] = (LANGUAGE_AGREES, LANGUAGE_DIFFERS, LANGUAGE_UNVERIFIED)

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

QUALITY_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("dnsmos_sig", pa.float32()),  # DNSMOS P.835 speech quality (pipeline/dnsmos.py), NaN unscorable
    ("dnsmos_bak", pa.float32()),  # ... background
    ("dnsmos_ovrl", pa.float32()),  # ... overall
    ("dnsmos_p808", pa.float32()),  # DNSMOS P.808 MOS
    ("speaker_consistency", pa.float32()),  # share of the speech its main voice holds (segmentation-3.0)
    ("speaker_split_sim", pa.float32()),  # lowest GE2E before/after cosine over the clip's boundaries
    ("speaker_change_s", pa.float32()),  # first change of voice from the clip start, NaN when none
)
"""Per-clip quality signals from models (not conditioning features: no control token reads them)."""

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
        ("language_scores", pa.list_(LANGUAGE_SCORE_TYPE)),  # audio LID's top languages, most probable first
        ("language_check", pa.string()),  # LANGUAGE_CHECKS; "" when no text identifier ran
        (
            "source_language",
            pa.string(),
        ),  # the language of most of the source's speech (pipeline/source_language.py)
        ("transcripts", pa.list_(TRANSCRIPT_TYPE)),
        ("pairs", pa.list_(PAIR_TYPE)),
        ("agreement", pa.float32()),  # 1 - mean pairwise error (pipeline/agreement.py); NaN single-system
        ("n_asr", pa.int16()),  # ASR systems that took the clip (support its languages) and produced text
        ("asr_failures", pa.list_(ASR_FAILURE_TYPE)),  # systems that took the clip and failed on it
        ("hallucinated", pa.bool_()),  # every system's transcript failed its sanity checks
        *FEATURE_FIELDS,
        *QUALITY_FIELDS,
        *((f"eligible_{s}", pa.bool_()) for s in STAGES),
        ("run_id", pa.string()),
    ],
    metadata={"accord.core.clip": "clip", "accord.schema_version": str(SCHEMA_VERSION)},
)

ELIGIBILITY_COLUMNS: tuple[str, ...] = tuple(f"eligible_{s}" for s in STAGES)

# ---------------------------------------------------------------- the clip in a shard

SAMPLE_FIELDS: tuple[str, ...] = ("n_frames", "speaker_crop", "augmentations", "normalization_outcome")
"""What tokenize adds to a clip's row in its sample's ``json`` member: code frames, the speaker
crop ``[f0, f1)`` in frames, the names of the augmented speaker views, and how its transcripts'
text was normalized (``accord.tokenize.textnorm``: normalized, passthrough, failed, off)."""

SAMPLE_TRANSCRIPT_FIELDS: tuple[str, ...] = ("text_normalized",)
"""What tokenize adds to each transcript of a sample: its ``text`` in the spoken form the model
reads (``accord.tokenize.textnorm``); ``text`` stays the written form, for lineage."""

SAMPLE_META_DROPS: tuple[str, ...] = ("pairs",)
"""Manifest columns a sample does not carry (per-system pairs are ingest diagnostics)."""

SAMPLE_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("shard", pa.string()),
        *((f"eligible_{s}", pa.bool_()) for s in STAGES),
        ("language", pa.string()),
        ("language_prob", pa.float32()),
        ("language_check", pa.string()),
        ("source_language", pa.string()),
        ("duration_s", pa.float64()),
        ("n_frames", pa.int32()),
        ("agreement", pa.float32()),
        ("n_asr", pa.int16()),
        ("hallucinated", pa.bool_()),
        *FEATURE_FIELDS,
        *QUALITY_FIELDS,
        ("source_uri", pa.string()),
    ]
)
"""``samples.parquet``: one row per sample, the clip columns the trainer filters and samples on
(same names as ``CLIP_SCHEMA``; every column a stage threshold reads, so eligibility re-applied
at train time sees what ingest saw) plus the shard that holds it."""


def float_or_nan(v: Any) -> float:
    """A clip value as a float: NaN for None or anything that is not a number (an unknown
    probability, a missing feature), which every threshold then treats as failing."""
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def json_safe(v: Any) -> Any:
    """JSON-ready: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def sample_meta(
    row: Mapping[str, Any], n_frames: int, speaker_crop: tuple[int, int], augmentations: Sequence[str]
) -> dict[str, Any]:
    """A sample's ``json`` member: the clip's manifest row (``CLIP_SCHEMA`` names, flat, without
    ``SAMPLE_META_DROPS``, transcripts with ``SAMPLE_TRANSCRIPT_FIELDS`` when the row has them)
    plus ``SAMPLE_FIELDS``; ``duration_s`` is the span ``end_s - start_s``."""
    transcript_keys = TRANSCRIPT_TYPE.names
    meta: dict[str, Any] = {}
    for name in CLIP_SCHEMA.names:
        if name in SAMPLE_META_DROPS:
            continue
        value = row.get(name)
        if name == "transcripts":
            value = [
                {
                    **{k: t.get(k) for k in transcript_keys},
                    **{k: t[k] for k in SAMPLE_TRANSCRIPT_FIELDS if k in t},
                }
                for t in value or []
            ]
        elif name.startswith("eligible_"):
            value = bool(value)
        elif name == "language":
            value = value or ""
        meta[name] = value
    meta["start_s"], meta["end_s"] = float(row["start_s"]), float(row["end_s"])
    meta["duration_s"] = meta["end_s"] - meta["start_s"]
    meta["n_frames"] = int(n_frames)
    meta["speaker_crop"] = [int(speaker_crop[0]), int(speaker_crop[1])]
    meta["augmentations"] = list(augmentations)
    if "normalization_outcome" in row:
        meta["normalization_outcome"] = row["normalization_outcome"]
    return json_safe(meta)


def clip_of(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A sample's ``json`` member in the current (flat) shape.

    Shards written before the flat shape nested eligibility (``{"eligible": {stage: bool}}``)
    and features (``{"features": {name: value}}``); they are lifted to ``eligible_<stage>`` and
    the feature columns, so every reader sees one shape whatever wrote the shard.
    """
    out = dict(meta)
    nested_eligible = out.pop("eligible", None)
    if isinstance(nested_eligible, Mapping):
        for s in STAGES:
            out.setdefault(f"eligible_{s}", bool(nested_eligible.get(s, False)))
    nested_features = out.pop("features", None)
    if isinstance(nested_features, Mapping):
        for name, _ in FEATURE_FIELDS:
            out.setdefault(name, nested_features.get(name))
    return out


def sample_row(shard: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The ``SAMPLE_SCHEMA`` row of a sample's ``json`` member (either shape) in ``shard``."""
    clip = clip_of(meta)
    row = {name: clip.get(name) for name in SAMPLE_SCHEMA.names}
    row["shard"] = shard
    row["language"] = clip.get("language") or ""
    row["duration_s"] = float(clip["duration_s"])
    row["n_frames"] = int(clip["n_frames"])
    for s in STAGES:
        row[f"eligible_{s}"] = bool(clip.get(f"eligible_{s}", False))
    return row


def upgrade_clips(table: pa.Table) -> pa.Table:
    """A clip table of an older ``SCHEMA_VERSION`` in the current ``CLIP_SCHEMA``: columns it
    lacks become nulls, and transcripts gain the version-2 fields (null). A version-1 clip
    with fewer than two transcripts had agreement 0 and no ``n_asr``: left null, eligibility
    treats it as the multi-system clip it was scored as."""
    if "transcripts" in table.column_names and table.schema.field("transcripts").type != pa.list_(
        TRANSCRIPT_TYPE
    ):
        keys = TRANSCRIPT_TYPE.names
        rows = [
            None if ts is None else [{k: t.get(k) for k in keys} for t in ts]
            for ts in table.column("transcripts").to_pylist()
        ]
        i = table.schema.get_field_index("transcripts")
        table = table.set_column(i, "transcripts", pa.array(rows, pa.list_(TRANSCRIPT_TYPE)))
    for f in CLIP_SCHEMA:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(len(table), f.type))
    return table.select(CLIP_SCHEMA.names).cast(CLIP_SCHEMA)
