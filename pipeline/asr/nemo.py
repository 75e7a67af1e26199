"""NeMo backend (``accord[nemo]``): any ``.nemo`` ASR model (Parakeet, Canary, CTC/RNNT).

NeMo is imported lazily: its import alone takes 15-23 s, so pipelines that do not
configure it never pay for it.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from accord.pipeline.asr.base import AsrBackend, Transcript


class NemoBackend(AsrBackend):
    name = "nemo"

    def __init__(self, model_ref: str | None = None, **options: Any) -> None:
        super().__init__(model_ref, **options)
        self.batch_size = int(options.get("batch_size", 8))
        self.language = str(options.get("language", ""))
        # a NeMo model is trained for one language (Parakeet en, a German Conformer...): said
        # here, it routes clips; unsaid, the system takes every clip (or set asr_languages)
        self.languages = frozenset({self.language}) if self.language else None
        self.model: Any = None

    def load(self) -> None:
        if self.model is not None:
            return
        try:
            from nemo.collections.asr.models import ASRModel
        except ImportError as e:  # pragma: no cover - depends on the optional extra
            raise ImportError("the nemo ASR backend needs `pip install accord[nemo]`") from e

        from accord.core.weights import resolve

        ref = self.model_ref if ":" in self.model_ref else f"nemo:{self.model_ref}"
        model = ASRModel.restore_from(str(resolve(ref)), map_location="cpu")
        model.eval()
        self.model = model

    def transcribe_batch(
        self,
        audios: list[np.ndarray],
        groups: list[Hashable] | None = None,
        languages: list[str] | None = None,
    ) -> list[Transcript]:
        import torch

        self.load()
        with torch.inference_mode():
            hyps = self.model.transcribe(
                [np.asarray(a, np.float32) for a in audios], batch_size=self.batch_size, verbose=False
            )
        if isinstance(hyps, tuple):  # RNNT models return (best, all)
            hyps = hyps[0]
        out = []
        for h in hyps:
            text = h if isinstance(h, str) else getattr(h, "text", "")
            out.append(Transcript(text=str(text).strip(), language=self.language))
        return out
