"""Moonshine (moonshine-voice 0.0.73, bundled tiny-en ONNX): a second, independent model family.

English only. Clips are passed to the C library as a float buffer directly; the package's
own ``transcribe_without_streaming`` builds a ctypes array from a Python list, which costs
~5% of its time (ANCHORS.md).
"""

from __future__ import annotations

import ctypes
from collections.abc import Hashable
from typing import Any

import numpy as np
from accord.pipeline.asr.base import AsrBackend, Transcript

RATE = 16000
MIN_SAMPLES = RATE  # 1 s


class MoonshineBackend(AsrBackend):
    name = "moonshine"

    def __init__(self, model_ref: str = "moonshine:tiny-en", **options: Any) -> None:
        super().__init__(model_ref, **options)
        self.arch = str(options.get("arch", "TINY")).upper()
        # Clips are already VAD-cut. Moonshine's own VAD keeps a look-behind buffer across
        # calls that leaked the previous clip's tail ("You", "Thank") into the next text;
        # threshold 0 makes each clip one segment and the calls independent.
        self.library_options = {"vad_threshold": "0", **dict(options.get("library_options", {}))}
        self.transcriber: Any = None

    def load(self) -> None:
        if self.transcriber is not None:
            return
        from moonshine_voice.moonshine_api import ModelArch
        from moonshine_voice.transcriber import Transcriber

        from accord.weights import resolve

        self.transcriber = Transcriber(
            str(resolve(self.model_ref)), getattr(ModelArch, self.arch), options=self.library_options
        )

    def _transcribe(self, audio: np.ndarray) -> str:
        from moonshine_voice.moonshine_api import TranscriptC
        from moonshine_voice.transcriber import check_error

        tr = self.transcriber
        x = np.ascontiguousarray(audio, dtype=np.float32)
        if len(x) == 0:
            return ""
        if len(x) < MIN_SAMPLES:  # the library fails ("Failed to transcribe: -1") on very short input
            x = np.pad(x, (0, MIN_SAMPLES - len(x)))
        out = ctypes.POINTER(TranscriptC)()
        err = tr._lib.moonshine_transcribe_without_streaming(
            tr._handle, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), len(x), RATE, 0, ctypes.byref(out)
        )
        check_error(err)
        lines = tr._parse_transcript(out).lines
        return " ".join(line.text.strip() for line in lines if line.text.strip())

    def transcribe_batch(
        self, audios: list[np.ndarray], groups: list[Hashable] | None = None
    ) -> list[Transcript]:
        self.load()
        return [Transcript(text=self._transcribe(a), language="en") for a in audios]
