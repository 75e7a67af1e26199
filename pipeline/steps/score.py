"""AgreementStep, TranscriptCheckStep, FeatureStep and EligibilityStep: cheap per-clip CPU
steps after ASR."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from accord.core import audio_io
from accord.core.clip import CLIP_SCHEMA, ELIGIBILITY_COLUMNS, FEATURE_FIELDS, float_or_nan
from accord.core.eligibility import StageThresholds, eligible, load_thresholds
from accord.jobs.step import Item, ItemError, Step
from accord.pipeline import features
from accord.pipeline.agreement import consensus_language, score
from accord.pipeline.features import FeatureConfig
from accord.pipeline.transcript_checks import CheckConfig, all_flagged, check

ALL_SYSTEMS_FAILED = "all_systems_failed"


class AgreementStep(Step):
    """Normalised transcripts, pairwise WER/CER, ``agreement`` and ``n_asr`` among the systems
    that transcribed the clip (those that support its languages). The clip's language is the
    one identified per clip (the LID step) when there is one, else the systems' consensus.

    A clip that every system that took it failed on (``asr_failures`` and no transcript) is an
    error of this item (``asr``/``all_systems_failed``, every failure in the reason): the ingest
    then leaves its source without a completion marker, and the next run retries it."""

    name = "agreement"
    reads = ("transcripts.text", "asr_failures")
    # the LID step's language, else the systems' consensus (their language and its probability)
    may_read = ("language", "language_prob", "transcripts.language", "transcripts.language_prob",
                "transcripts.system", "transcripts.model")  # fmt: skip
    writes = ("transcripts.normalized", "pairs", "agreement", "n_asr", "language", "language_prob")

    def process(self, item: Item) -> list[Item]:
        failed = list(item.get("asr_failures") or [])
        if failed and not item.get("transcripts"):
            reason = "; ".join(f"{f['system']}: {f['error_type']}: {f['reason']}" for f in failed)
            raise ItemError("asr", ALL_SYSTEMS_FAILED, reason)
        out = dict(item)
        transcripts = [dict(t) for t in item.get("transcripts") or []]
        if item.get("language"):
            language, prob = str(item["language"]), float_or_nan(item.get("language_prob"))
        else:
            language, prob = consensus_language(transcripts)
        pairs, agreement = score(transcripts, language)
        out.update(
            transcripts=transcripts,
            pairs=pairs,
            agreement=agreement,
            n_asr=len(transcripts),
            language=language,
            language_prob=prob,
        )
        return [out]


class TranscriptCheckStep(Step):
    """Per transcript: repeated n-grams, compression ratio, characters per second of speech and
    Whisper's no-speech rule (:mod:`accord.pipeline.transcript_checks`); per clip ``hallucinated``.
    Runs after :class:`FeatureStep`: the speech time is the clip minus the leading and trailing
    silence it measured."""

    name = "transcript_checks"
    # the speech time is the clip minus the silences the feature step measured
    reads = ("audio_16k", "transcripts.text", "language", "leading_silence_s", "trailing_silence_s")
    may_read = ("transcripts.no_speech_prob", "transcripts.avg_logprob")
    writes = (
        "transcripts.repeat_ratio",
        "transcripts.compression_ratio",
        "transcripts.chars_per_s",
        "transcripts.flags",
        "hallucinated",
    )

    def __init__(self, config: CheckConfig | None = None) -> None:
        self.config = config or CheckConfig()

    def process(self, item: Item) -> list[Item]:
        duration = len(item["audio_16k"]) / 16000 if item.get("audio_16k") is not None else 0.0
        silence = (item.get("leading_silence_s") or 0.0) + (item.get("trailing_silence_s") or 0.0)
        speech_s = max(0.0, duration - silence)
        language = str(item.get("language") or "")
        transcripts = []
        for t in item.get("transcripts") or []:
            t = dict(t)
            t.update(
                check(
                    t.get("text") or "",
                    language,
                    speech_s,
                    float_or_nan(t.get("no_speech_prob")),
                    float_or_nan(t.get("avg_logprob")),
                    self.config,
                )
            )
            transcripts.append(t)
        out = dict(item)
        out.update(transcripts=transcripts, hallucinated=all_flagged(transcripts))
        return [out]


def primary_text(item: Item) -> str:
    """The transcript used for features: the first system's (configuration order)."""
    ts = item.get("transcripts") or []
    return (ts[0].get("text") or "") if ts else ""


class FeatureStep(Step):
    """Conditioning features (:mod:`accord.pipeline.features`); bandwidth from the source."""

    name = "features"
    reads = ("audio_16k",)
    # speaking rate from the first transcript; silences and SNR from the VAD frames; bandwidth
    # from the source when it is sampled above 16 kHz
    may_read = ("transcripts.text", "vad_probs", "source_sample_rate", "source_uri", "start_s", "end_s")
    writes = tuple(name for name, _ in FEATURE_FIELDS)

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()

    def process(self, item: Item) -> list[Item]:
        src, rate = None, None
        if self.config.bandwidth_from_source and (item.get("source_sample_rate") or 0) > 16000:
            try:
                src, rate = audio_io.read_segment(item["source_uri"], item["start_s"], item["end_s"], None)
            except (audio_io.AudioError, OSError):
                src, rate = None, None  # fall back to the 16 kHz copy (bandwidth <= 8 kHz)
        feats = features.compute(
            item["audio_16k"], primary_text(item), item.get("vad_probs"), src, rate, self.config
        )
        out = dict(item)
        out.update(feats)
        return [out]


@dataclass(frozen=True)
class EligibilityConfig:
    """The stage thresholds: stage -> overrides of the defaults (:mod:`accord.core.eligibility`)
    or ready :class:`StageThresholds`; None: the defaults."""

    thresholds: Mapping[str, StageThresholds] | Mapping[str, Mapping[str, Any]] | None = None


class EligibilityStep(Step):
    """``eligible_<stage>`` columns under the run's thresholds."""

    name = "eligibility"
    # the gates may read any column, so the step runs after every step that writes one
    may_read = tuple(c for c in CLIP_SCHEMA.names if c not in ELIGIBILITY_COLUMNS)
    writes = ELIGIBILITY_COLUMNS

    def __init__(self, config: EligibilityConfig | None = None) -> None:
        thresholds = (config or EligibilityConfig()).thresholds
        if thresholds and all(isinstance(v, StageThresholds) for v in thresholds.values()):
            self.thresholds = dict(thresholds)  # type: ignore[arg-type]
        else:
            self.thresholds = load_thresholds(thresholds)  # type: ignore[arg-type]

    def process(self, item: Item) -> list[Item]:
        out = dict(item)
        for stage, ok in eligible(item, self.thresholds).items():
            out[f"eligible_{stage}"] = ok
        return [out]
