"""SpeakerConsistencyStep: does a clip hold one voice? (GE2E windows over the clip)."""

from __future__ import annotations

import numpy as np

from accord.jobs.step import Item, ItemError
from accord.pipeline.speaker_consistency import SpeakerConsistency, SpeakerConsistencyConfig, SpeakerScore
from accord.pipeline.steps.batched import AudioBatchStep


class SpeakerConsistencyStep(AudioBatchStep):
    """Adds ``speaker_consistency``, ``speaker_split_sim`` and ``speaker_change_s`` (floats, NaN
    when the clip has under two 1.6 s windows of speech; ``speaker_change_s`` NaN when no
    change). Reads ``item["audio_16k"]`` (float32 mono, 16 kHz); NaN or inf samples are an
    ``ItemError`` of that item (``non_finite_audio``)."""

    name = "speaker_consistency"

    def __init__(self, config: SpeakerConsistencyConfig | None = None) -> None:
        self.model = SpeakerConsistency(config)

    def setup(self) -> None:
        self.model.load()

    def audio(self, item: Item) -> np.ndarray:
        x_T = super().audio(item)
        if not np.isfinite(x_T).all():
            raise ItemError(self.name, "non_finite_audio", "audio_16k holds NaN or inf samples")
        return x_T

    def score(self, audios: list[np.ndarray]) -> list[SpeakerScore]:
        return self.model.score_batch(audios)

    def annotate(self, item: Item, r: SpeakerScore) -> Item:
        return {
            **item,
            "speaker_consistency": float(r.consistency),
            "speaker_split_sim": float(r.split_sim),
            "speaker_change_s": float(r.change_s),
        }
