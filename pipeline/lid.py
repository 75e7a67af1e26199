"""Spoken-language identification per clip with Whisper's language head (CTranslate2).

The ASR backend (:mod:`accord.pipeline.asr.whisper`) detects the language once per packed
window of one source, so every clip of a bilingual source gets one language. Here each clip
is encoded alone and ``ctranslate2.models.Whisper.detect_language`` reads the language token
distribution after ``<|startoftranscript|>``: one language and its probability per clip.

Why a fixed ``window_s`` encoder window instead of 30 s or the clip's own length: CTranslate2
accepts any number of mel frames (it slices the positional embedding), and the encoder cost
grows with them: on 16 clips of 2-7 s (2 threads, int8) a 6 s window cost 0.09 s/clip, 10 s
0.17 s/clip and 30 s 0.87 s/clip, against 0.25 s/clip for the packed Whisper-base ASR. But
Whisper was trained on 30 s windows and its language head degrades when the window holds
little padding. On 63 espeak/flite/festival clips of 2-8.5 s (35 en, 14 de, 14 es): top-1
accuracy 55/63 at 6 s and at 10 s, 61/63 at 30 s (47/59 at the clip's own length); but with
the 0.7 gate on the probability, 10 s keeps as many correct clips as 30 s (51) and no wrong
one (30 s: one; 6 s: 47 correct, two wrong). The misses are espeak's German and Spanish
voices; every English clip scored >= 0.77. Slicing a clip's rows out of a packed window's
encoder output (free, were it to reuse the ASR's encode) was worse still: 17/46. The window
is the clip zero-padded in the log-mel domain (faster-whisper's ``pad_or_trim``; padding the
audio with zeros instead, as openai-whisper does, scored lower), or its first ``max_s``
seconds when longer.

Every clip's features depend on the clip alone (no padding to a batch-mate's length), so a
clip gets the same answer in any batch; clips are batched by equal frame counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RATE = 16000
HOP = 160  # Whisper's mel hop: 100 frames per second
MAX_FRAMES = 3000  # Whisper's 30 s window

NO_LANGUAGE: tuple[str, float] = ("", math.nan)


@dataclass(frozen=True)
class LanguageIdConfig:
    """How :class:`WhisperLanguageId` loads and runs Whisper."""

    model: str = "whisper:base"  # any multilingual CTranslate2 Whisper, via accord.core.weights.resolve
    device: str = "cpu"
    compute_type: str = "int8"
    threads: int = 2  # intra-op CPU threads
    batch_size: int = 16  # clips per detect_language call (clips of equal window length)
    # Encoder window: each clip is padded to at least this many seconds (see the module doc for
    # the accuracy/cost curve); clips longer than it are encoded at their own length, <= max_s.
    window_s: float = 10.0
    max_s: float = 30.0
    min_s: float = 0.1  # shorter clips (and empty or non-finite ones) get NO_LANGUAGE
    # The step's source vote: a source's clips that all name one language at least this surely
    # skip the joined pass (it would name the same language); None always runs it. 0.7 is the
    # anneal stages' language gate; at 0.5 to 0.9 no source of the sample bucket (x2) or the real
    # corpus changed its joined language or its source_language (issue #28).
    source_agree_prob: float | None = 0.7


class WhisperLanguageId:
    """Whisper's language head over single clips; :meth:`load` once per process (an actor)."""

    def __init__(self, config: LanguageIdConfig | None = None) -> None:
        self.config = config or LanguageIdConfig()
        self.model: Any = None
        self.feature_extractor: Any = None

    def load(self) -> WhisperLanguageId:
        if self.model is not None:
            return self
        from faster_whisper.feature_extractor import FeatureExtractor

        from accord.core.weights import resolve
        from accord.pipeline.asr.whisper import whisper_model

        c = self.config
        # the Whisper ASR backend of the same actor, when it runs the same model, shares it
        model = whisper_model(str(resolve(c.model)), c.device, c.compute_type, c.threads).model
        if not model.is_multilingual:
            raise ValueError(f"{c.model} is an English-only Whisper: it has no language head")
        self.feature_extractor = FeatureExtractor(feature_size=model.n_mels)
        self.model = model
        return self

    def frames(self, n_samples: int) -> int:
        """Encoder window (mel frames, even) for a clip of ``n_samples``: depends on the clip alone."""
        c = self.config
        n = max(math.ceil(n_samples / HOP), round(c.window_s * 100))
        n = min(n, round(c.max_s * 100), MAX_FRAMES)
        return n + n % 2

    def features(self, x_T: np.ndarray) -> np.ndarray:
        """Log-mel ``[n_mels, frames]`` of one clip, zero-padded (or cut) to :meth:`frames`."""
        from faster_whisper.audio import pad_or_trim

        n = self.frames(len(x_T))
        x_T = x_T[: n * HOP]
        return pad_or_trim(self.feature_extractor(x_T)[..., :-1], n)

    def scorable(self, x_T: np.ndarray) -> bool:
        return len(x_T) >= self.config.min_s * RATE and bool(np.isfinite(x_T).all())

    def detect_batch(self, audios_16k: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """``(language, probability)`` per clip, in order: the top of :meth:`detect_scores`, or
        :data:`NO_LANGUAGE` (``""``, NaN) for an empty, too short or non-finite clip."""
        return [scores[0] if scores else NO_LANGUAGE for scores in self.detect_scores(audios_16k)]

    def detect_scores(
        self, audios_16k: Sequence[np.ndarray], top_k: int = 5
    ) -> list[list[tuple[str, float]]]:
        """The ``top_k`` most probable languages per clip, most probable first: ISO 639-1 as
        Whisper's token spells it (``"en"``, ``"de"``; a few are longer, e.g. ``"haw"``) with the
        softmax probability of that token. An empty, too short or non-finite clip gets ``[]``; a
        clip that is not 1-D raises ``ValueError`` (the step checks that first). The ASR step
        routes on the whole list (a clip plausibly in two languages goes only to systems that
        handle both), not on the top language alone."""
        import ctranslate2

        self.load()
        out: list[list[tuple[str, float]]] = [[] for _ in audios_16k]
        by_frames: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, a in enumerate(audios_16k):
            x_T = np.asarray(a, dtype=np.float32)
            if x_T.ndim != 1:
                raise ValueError(f"clip {i}: expected mono 1-D audio, got shape {x_T.shape}")
            if self.scorable(x_T):
                by_frames.setdefault(self.frames(len(x_T)), []).append((i, x_T))
        bs = max(1, self.config.batch_size)
        for group in by_frames.values():
            for s in range(0, len(group), bs):
                chunk = group[s : s + bs]
                feats_BMT = np.ascontiguousarray(np.stack([self.features(x_T) for _, x_T in chunk]))
                ranked = self.model.detect_language(ctranslate2.StorageView.from_array(feats_BMT))
                for (i, _), langs in zip(chunk, ranked, strict=True):
                    out[i] = [(token[2:-2], float(prob)) for token, prob in langs[: max(1, top_k)]]
        return out
