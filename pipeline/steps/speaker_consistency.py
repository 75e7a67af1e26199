"""SpeakerConsistencyStep: does a clip hold one voice? (pyannote segmentation-3.0 and GE2E over the clip)."""

from __future__ import annotations

import math

import numpy as np

from accord.jobs.step import Item, ItemError
from accord.pipeline.speaker_consistency import (
    SpeakerConsistency,
    SpeakerConsistencyConfig,
    SpeakerScore,
    split_at_change,
)
from accord.pipeline.steps.batched import AUDIO_KEY, AudioBatchStep
from accord.pipeline.vad import FRAME, RATE, clip_id


class SpeakerConsistencyStep(AudioBatchStep):
    """Adds ``speaker_consistency`` (share of the speech its main voice holds, NaN under 0.5 s of
    speech), ``speaker_split_sim`` (lowest GE2E before/after cosine, NaN under two 1.6 s windows
    of speech) and ``speaker_change_s`` (first change of voice from the clip start, NaN when the
    clip has one voice); see :mod:`accord.pipeline.speaker_consistency`. Reads
    ``item["audio_16k"]`` (float32 mono, 16 kHz); NaN or inf samples are an ``ItemError`` of that
    item (``non_finite_audio``).

    A clip with exactly one change of voice whose two parts both last ``min_part_s`` or more is
    split there, before ASR, into two clips that are scored again (the issue's "split instead of
    drop": a dialogue turn VAD ran together keeps both speakers' speech); a clip with more changes,
    or a part too short, stays whole and the anneal gates refuse it (``split``, ``min_part_s``)."""

    name = "speaker_consistency"
    reads = (AUDIO_KEY,)
    may_read = ("vad_probs", "source_uri", "source_sha256", "start_s", "end_s")  # to cut a clip in two
    # a split clip's parts get their own id, span and audio: later steps read those
    writes = (
        "speaker_consistency",
        "speaker_split_sim",
        "speaker_change_s",
        "clip_id",
        "start_s",
        "end_s",
        "duration_s",
    )
    carries = (AUDIO_KEY, "vad_probs", "_speaker_changes")

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
            "_speaker_changes": r.n_changes,
        }

    def process(self, item: Item) -> list[Item]:
        result = self.process_batch([item])[0]
        if isinstance(result, Exception):
            raise result
        return result if isinstance(result, list) else [result]

    def process_batch(self, items: list[Item]) -> list[Item | Exception | list[Item]]:  # type: ignore[override]
        out: list = super().process_batch(items)
        if not self.model.config.split:
            return out
        cuts = {i: self.parts(it) for i, it in enumerate(out) if not isinstance(it, Exception)}
        cuts = {i: p for i, p in cuts.items() if len(p) == 2}
        if not cuts:
            return out
        parts = [p for i in sorted(cuts) for p in cuts[i]]
        scored = iter(super().process_batch(parts))
        for i in sorted(cuts):
            out[i] = [next(scored), next(scored)]
        return out

    def parts(self, item: Item) -> list[Item]:
        """The two clips ``item`` splits into at its one change of voice, or ``[]``."""
        change = float(item.get("speaker_change_s", math.nan))
        if item.get("_speaker_changes") != 1 or not math.isfinite(change) or item.get("end_s") is None:
            return []  # one change, in a clip of a source (a bare audio item is scored, not cut)
        start, end = float(item["start_s"]), float(item["end_s"])
        spans = split_at_change(start, end, change, self.model.config.min_part_s)
        if len(spans) != 2:
            return []
        x_T, probs = item[AUDIO_KEY], item.get("vad_probs")
        out = []
        for a, b in spans:
            i0, i1 = round((a - start) * RATE), round((b - start) * RATE)
            part = {k: v for k, v in item.items() if not k.startswith("speaker_") and k != "_speaker_changes"}
            part.update(
                clip_id=clip_id(
                    str(item.get("source_uri") or ""), str(item.get("source_sha256") or ""), a, b
                ),
                start_s=round(a, 3),
                end_s=round(b, 3),
                duration_s=round(b - a, 3),
            )
            part[AUDIO_KEY] = x_T[i0:i1].copy()
            if probs is not None:
                part["vad_probs"] = probs[i0 // FRAME : math.ceil(i1 / FRAME)].copy()
            out.append(part)
        return out
