"""Moonshine tiny-en (moonshine-voice 0.0.73's bundled ONNX): a second, independent model family.

English only. Two engines over the same model files:

- ``onnx`` (default): :mod:`accord.pipeline.asr.moonshine_onnx`, each clip encoded alone and
  ``batch_size`` clips decoded greedily together: ~3x the library's throughput at the same WER.
  Clips of any length the VAD cuts (up to 30 s) decode whole, as in the library.
- ``library``: the package's C library, one clip per call; the reference the tests compare
  against. Clips go to it as a float buffer directly; the package's own
  ``transcribe_without_streaming`` builds a ctypes array from a Python list, which costs ~5%
  of its time (ANCHORS.md).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from accord.pipeline.asr.base import AsrBackend, Transcript
from accord.pipeline.asr.moonshine_onnx import MIN_SAMPLES, RATE, MoonshineOnnx, as_input


@dataclass(frozen=True)
class MoonshineOptions:
    engine: str = "onnx"  # "onnx" (batched, accord's decoder) or "library" (moonshine-voice's C library)
    threads: int = 2  # onnx engine: intra-op threads per session
    spin: bool = False  # onnx engine: let idle threads spin (faster alone, slower beside other actors)
    batch_size: int = 16  # onnx engine: clips per decoder batch (similar lengths together)
    # Token budget per clip: speech stays below ~6 tokens/s (Moonshine's reference decoding
    # uses 6.5); the budget bounds a repetition loop on noise. Real 10-30 s speech used 2.9-5.1
    # tokens/s, so the budget does not cut long clips short.
    tokens_per_s: float = 6.5
    arch: str = "TINY"  # library engine: moonshine_api.ModelArch
    library_options: dict[str, str] = field(default_factory=dict)


class MoonshineBackend(AsrBackend):
    name = "moonshine"
    thread_option = "threads"
    options_class = MoonshineOptions
    default_model = "moonshine:tiny-en"
    languages = frozenset({"en"})  # tiny-en; a system on another Moonshine model sets asr_languages

    def __init__(self, model_ref: str | None = None, **options: Any) -> None:
        super().__init__(model_ref, **options)
        self.opts = MoonshineOptions(**options)
        if self.opts.engine not in ("onnx", "library"):
            raise ValueError(f"moonshine engine must be 'onnx' or 'library', not {self.opts.engine!r}")
        # Clips are already VAD-cut. The library's own VAD keeps a look-behind buffer across
        # calls that leaked the previous clip's tail ("You", "Thank") into the next text;
        # threshold 0 makes each clip one segment and the calls independent.
        self.library_options = {"vad_threshold": "0", **self.opts.library_options}
        self.model: Any = None

    def load(self) -> None:
        if self.model is not None:
            return
        from accord.core.weights import resolve

        path = resolve(self.model_ref)
        if self.opts.engine == "onnx":
            self.model = MoonshineOnnx(path, threads=self.opts.threads, spin=self.opts.spin)
        else:
            from moonshine_voice.moonshine_api import ModelArch
            from moonshine_voice.transcriber import Transcriber

            arch = getattr(ModelArch, self.opts.arch.upper())
            self.model = Transcriber(str(path), arch, options=self.library_options)

    def transcribe_batch(
        self,
        audios: list[np.ndarray],
        groups: list[Hashable] | None = None,
        languages: list[str] | None = None,
    ) -> list[Transcript]:
        self.load()
        if self.opts.engine == "library":
            return [Transcript(text=self._library(a), language="en") for a in audios]
        return self._onnx(audios)

    def _onnx(self, audios: list[np.ndarray]) -> list[Transcript]:
        """Encode each clip, then decode in batches of similar length (stable order, so a given
        list of clips always forms the same batches and gives the same text)."""
        out: list[Transcript | None] = [None] * len(audios)
        nonempty = [i for i, a in enumerate(audios) if len(a)]
        for i in set(range(len(audios))) - set(nonempty):
            out[i] = Transcript(text="", language="en")
        order = sorted(nonempty, key=lambda i: (len(audios[i]), i))
        bs = max(1, self.opts.batch_size)
        for k in range(0, len(order), bs):
            idx = order[k : k + bs]
            states = [self.model.encode(audios[i]) for i in idx]
            budget = [self._budget(len(audios[i])) for i in idx]
            for i, dec in zip(idx, self.model.decode(states, budget), strict=True):
                text = self.model.tokenizer.decode(dec.ids)
                out[i] = Transcript(text=text, language="en", avg_logprob=dec.avg_logprob)
        return out  # type: ignore[return-value]

    def _budget(self, n_samples: int) -> int:
        return max(1, math.ceil(max(n_samples, MIN_SAMPLES) / RATE * self.opts.tokens_per_s))

    def _library(self, audio: np.ndarray) -> str:
        from moonshine_voice.moonshine_api import TranscriptC
        from moonshine_voice.transcriber import check_error

        tr = self.model
        if len(audio) == 0:
            return ""
        x = as_input(audio)  # the library fails ("Failed to transcribe: -1") on very short input
        out = ctypes.POINTER(TranscriptC)()
        err = tr._lib.moonshine_transcribe_without_streaming(
            tr._handle, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), len(x), RATE, 0, ctypes.byref(out)
        )
        check_error(err)
        lines = tr._parse_transcript(out).lines
        return " ".join(line.text.strip() for line in lines if line.text.strip())
