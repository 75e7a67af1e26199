"""AudioBatchStep: the shape every per-clip model step shares (language ID, DNSMOS, speaker).

Each item's 16 kHz audio is checked on its own, so a bad item fails alone (an
:class:`~accord.jobs.step.ItemError` in its place) and the valid ones go to the model in one
batched call; the model's result for each is then written into a copy of its item.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from accord.jobs.step import Item, ItemError, Step

AUDIO_KEY = "audio_16k"  # float32 mono 16 kHz: what the VAD step cut


class AudioBatchStep(Step):
    """Subclasses load their model in ``setup`` and define :meth:`score` and :meth:`annotate`."""

    def audio(self, item: Item) -> np.ndarray:
        """The item's audio as float32 1-D; an ``ItemError`` of this item when there is none."""
        x_T = item.get(AUDIO_KEY)
        if x_T is None:
            raise ItemError(self.name, "bad_item", f"item has no {AUDIO_KEY!r}")
        x_T = np.asarray(x_T, dtype=np.float32)
        if x_T.ndim != 1:
            raise ItemError(self.name, "bad_audio", f"{AUDIO_KEY} must be mono 1-D, got shape {x_T.shape}")
        return x_T

    @abstractmethod
    def score(self, audios: list[np.ndarray]) -> list[Any]:
        """One result per clip, in order, from one batched model call."""

    @abstractmethod
    def annotate(self, item: Item, result: Any) -> Item:
        """A copy of ``item`` with the result's columns."""

    def process(self, item: Item) -> list[Item]:
        result = self.process_batch([item])[0]
        if isinstance(result, Exception):
            raise result
        return [result]

    def process_batch(self, items: list[Item]) -> list[Item | Exception]:
        self.setup()
        out: list[Item | Exception] = []
        audios: list[np.ndarray] = []
        for item in items:
            try:
                audios.append(self.audio(item))
                out.append(item)
            except ItemError as e:
                out.append(e)
        results = iter(self.score(audios))
        return [o if isinstance(o, Exception) else self.annotate(o, next(results)) for o in out]
