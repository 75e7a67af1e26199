"""AgreementStep, FeatureStep and EligibilityStep: cheap per-clip CPU steps after ASR."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from accord.core.eligibility import StageThresholds, eligible, load_thresholds
from accord.jobs.step import Item, Step
from accord.pipeline import audio_io, features
from accord.pipeline.agreement import consensus_language, score
from accord.pipeline.features import FeatureConfig


class AgreementStep(Step):
    """Consensus language, normalised transcripts, pairwise WER/CER and ``agreement``."""

    name = "agreement"

    def process(self, item: Item) -> list[Item]:
        out = dict(item)
        transcripts = [dict(t) for t in item.get("transcripts") or []]
        language, prob = consensus_language(transcripts)
        pairs, agreement = score(transcripts, language)
        out.update(
            transcripts=transcripts, pairs=pairs, agreement=agreement, language=language, language_prob=prob
        )
        return [out]


def primary_text(item: Item) -> str:
    """The transcript used for features: the first system's (configuration order)."""
    ts = item.get("transcripts") or []
    return (ts[0].get("text") or "") if ts else ""


class FeatureStep(Step):
    """Conditioning features (:mod:`accord.pipeline.features`); bandwidth from the source."""

    name = "features"

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


class EligibilityStep(Step):
    """``eligible_<stage>`` columns under the run's thresholds."""

    name = "eligibility"

    def __init__(
        self, thresholds: Mapping[str, StageThresholds] | Mapping[str, Mapping[str, Any]] | None = None
    ):
        if thresholds and all(isinstance(v, StageThresholds) for v in thresholds.values()):
            self.thresholds = dict(thresholds)  # type: ignore[arg-type]
        else:
            self.thresholds = load_thresholds(thresholds)  # type: ignore[arg-type]

    def process(self, item: Item) -> list[Item]:
        out = dict(item)
        for stage, ok in eligible(item, self.thresholds).items():
            out[f"eligible_{stage}"] = ok
        return [out]
