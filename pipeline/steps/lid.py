"""LanguageIdStep: the spoken language of each clip on its own (:mod:`accord.pipeline.lid`).

Adds to an item:

- ``language`` (str): ISO 639-1 code as Whisper's language token spells it (``"en"``, ``"de"``);
- ``language_prob`` (float): Whisper's probability of that language, in [0, 1].

A clip with no audio (missing, ``None``, empty), shorter than ``min_s`` (0.1 s) or with NaN/inf
samples gets ``""`` and NaN: NaN fails any active language-probability gate and passes one
left off. An ``audio_16k`` that is not 1-D is an :class:`ItemError` of that item alone.
"""

from __future__ import annotations

import numpy as np

from accord.jobs.step import Item
from accord.pipeline.lid import LanguageIdConfig, WhisperLanguageId
from accord.pipeline.steps.batched import AUDIO_KEY, AudioBatchStep

OUTPUT_KEYS = ("language", "language_prob")


class LanguageIdStep(AudioBatchStep):
    """One batched ``detect_language`` pass per batch of clips (per equal encoder length)."""

    name = "lid"

    def __init__(self, config: LanguageIdConfig | None = None) -> None:
        self.config = config or LanguageIdConfig()
        self.model: WhisperLanguageId | None = None

    def setup(self) -> None:
        if self.model is None:
            self.model = WhisperLanguageId(self.config).load()

    def audio(self, item: Item) -> np.ndarray:
        if item.get(AUDIO_KEY) is None:  # no audio: no language (detect_batch says "", NaN)
            return np.zeros(0, np.float32)
        return super().audio(item)

    def score(self, audios: list[np.ndarray]) -> list[tuple[str, float]]:
        assert self.model is not None
        return self.model.detect_batch(audios)

    def annotate(self, item: Item, result: tuple[str, float]) -> Item:
        return {**item, **dict(zip(OUTPUT_KEYS, result, strict=True))}
