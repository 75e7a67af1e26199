"""DnsmosStep: DNSMOS P.835 (SIG, BAK, OVRL) and P.808 MOS of each clip (:mod:`accord.pipeline.dnsmos`).

Adds to an item, as Python floats:

- ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl``: P.835 speech, background and overall MOS;
- ``dnsmos_p808``: P.808 overall MOS.

All four are NaN when the clip is not scored: empty, shorter than ``min_duration_s`` (0.5 s),
NaN/inf samples, or RMS under ``silence_dbfs`` (-60 dBFS). NaN fails any active DNSMOS
threshold in :mod:`accord.core.eligibility`, and passes one left off. An item without a 1-D
``audio_16k`` is an :class:`ItemError` of that item alone.
"""

from __future__ import annotations

import numpy as np

from accord.jobs.step import Item
from accord.pipeline.dnsmos import Dnsmos, DnsmosConfig, DnsmosScores
from accord.pipeline.steps.batched import AUDIO_KEY, AudioBatchStep

OUTPUT_KEYS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")


class DnsmosStep(AudioBatchStep):
    """One batched DNSMOS pass over a batch of clips: the windows of every clip share the
    ``session.run`` calls."""

    name = "dnsmos"
    reads = (AUDIO_KEY,)
    writes = OUTPUT_KEYS

    def __init__(self, config: DnsmosConfig | None = None) -> None:
        self.config = config or DnsmosConfig()
        self.model: Dnsmos | None = None

    def setup(self) -> None:
        if self.model is None:
            self.model = Dnsmos(self.config).load()

    def score(self, audios: list[np.ndarray]) -> list[DnsmosScores]:
        assert self.model is not None
        return self.model.score_batch(audios)

    def annotate(self, item: Item, s: DnsmosScores) -> Item:
        return {**item, **dict(zip(OUTPUT_KEYS, (s.sig, s.bak, s.ovrl, s.p808), strict=True))}
