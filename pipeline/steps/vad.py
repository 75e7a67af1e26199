"""VadStep: a decoded source -> utterance clip items carrying their 16 kHz audio."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from accord.core import audio_io, errors
from accord.jobs.step import Item, ItemError, Step
from accord.pipeline.steps.decode import source_uri
from accord.pipeline.vad import FRAME, RATE, FrameLevels, SileroVad, VadConfig, clip_id, load_vad, segment

# Keys of a source item copied onto each clip.
_SOURCE_KEYS = ("source_sample_rate", "source_channels", "source_container", "source_codec")


class VadStep(Step):
    """Windowed decode + silero-vad + clip shaping (:class:`VadConfig`).

    Output items: ``clip_id, source_uri, source_sha256, start_s, end_s, duration_s,
    source_duration_s`` (measured by decoding), ``audio_16k`` (float32) and ``vad_probs``
    (frame probabilities inside the clip, 32 ms each, for the feature step).
    """

    name = "vad"
    reads = ("source_uri",)
    may_read = ("source_sha256", *_SOURCE_KEYS)  # copied onto each clip
    writes = ("clip_id", "source_uri", "source_sha256", "source_duration_s", "start_s", "end_s", "duration_s")
    carries = ("audio_16k", "vad_probs")

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self._vad: SileroVad | None = None

    def setup(self) -> None:
        if self._vad is None:
            self._vad = load_vad(self.config)

    def _scan(self, uri: str) -> tuple[np.ndarray, np.ndarray, float, np.ndarray | None]:
        """Frame probabilities and levels, decoded duration, and the audio when short enough to keep."""
        self.setup()
        assert self._vad is not None
        self._vad.reset()
        levels = FrameLevels()
        probs: list[np.ndarray] = []
        dbs: list[np.ndarray] = []
        kept: list[np.ndarray] | None = []
        n = 0
        try:
            for w in audio_io.iter_windows(uri, self.config.window_s, RATE):
                probs.append(self._vad(w.audio))
                dbs.append(levels(w.audio))
                n += len(w.audio)
                if kept is not None:
                    kept.append(w.audio)
                    if n > self.config.max_in_memory_s * RATE:
                        kept = None  # long source: cut clips in a second decoding pass
            probs.append(self._vad(np.zeros(0, np.float32), last=True))
            dbs.append(levels(np.zeros(0, np.float32), last=True))
        except audio_io.AudioError as e:
            raise ItemError("decode", e.error_type, e.reason) from None
        audio = np.concatenate(kept) if kept else None
        return np.concatenate(probs), np.concatenate(dbs), n / RATE, audio

    def process(self, item: Item) -> list[Item]:
        return list(self.iter_process(item))

    def iter_process(self, item: Item) -> Iterator[Item]:
        """Scan the source (frame probabilities only), then yield its clips one at a time:
        a long source's clips are cut in a second decoding pass and never held together."""
        uri = source_uri(item)
        probs, levels_db, duration_s, audio = self._scan(uri)
        segs = segment(probs, duration_s, self.config, levels_db)
        if not segs:
            raise ItemError(
                self.name, errors.NO_SPEECH, f"no speech clip of >= {self.config.min_clip_s} s found"
            )
        sha = item.get("source_sha256") or ""
        base = {k: item[k] for k in _SOURCE_KEYS if k in item}
        for seg, x in zip(segs, self._cuts(uri, segs, audio), strict=True):
            f0, f1 = int(seg.start_s * RATE) // FRAME, math.ceil(seg.end_s * RATE / FRAME)
            yield {
                **base,
                "clip_id": clip_id(uri, sha, seg.start_s, seg.end_s),
                "source_uri": uri,
                "source_sha256": sha,
                "source_duration_s": duration_s,
                "start_s": seg.start_s,
                "end_s": seg.end_s,
                "duration_s": round(seg.end_s - seg.start_s, 3),
                "audio_16k": x,
                "vad_probs": probs[f0:f1].copy(),
            }

    def _cuts(self, uri: str, segs: list, audio: np.ndarray | None) -> Iterator[np.ndarray]:
        """Each segment's samples, in order, as soon as they are decoded."""
        if audio is not None:
            for s in segs:
                yield audio[round(s.start_s * RATE) : round(s.end_s * RATE)].copy()
            return
        # Second pass over the windows; clips are sorted and never overlap. Parts of the
        # clips under way are the only audio kept between windows.
        parts: dict[int, list[np.ndarray]] = {}
        done = 0  # clips yielded so far
        for w in audio_io.iter_windows(uri, self.config.window_s, RATE):
            w0 = round(w.start_s * RATE)
            w1 = w0 + len(w.audio)
            for i in range(done, len(segs)):
                a, b = round(segs[i].start_s * RATE), round(segs[i].end_s * RATE)
                if a >= w1:
                    break
                if b > w0:
                    parts.setdefault(i, []).append(w.audio[max(a, w0) - w0 : min(b, w1) - w0])
            while done < len(segs) and round(segs[done].end_s * RATE) <= w1:
                yield _join(parts.pop(done, []))
                done += 1
        while done < len(segs):  # the second decode ended early: what it gave
            yield _join(parts.pop(done, []))
            done += 1


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)  # a copy: windows are freed
