"""AsrStep: fill ``transcripts`` of clip items with every configured ASR system."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from accord.jobs.step import Item, ItemError, Step
from accord.pipeline.asr.base import AsrBackend, create_backend


@dataclass
class AsrSpec:
    """One configured system: registry name, model reference, backend options."""

    backend: str
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


DEFAULT_SYSTEMS = (AsrSpec("faster-whisper", "whisper:base"), AsrSpec("moonshine", "moonshine:tiny-en"))


class AsrStep(Step):
    """Runs each backend over the batch; a backend that fails marks the batch's clips as errors.

    ``backends`` may be :class:`AsrSpec`/dicts (created lazily in :meth:`setup`, i.e. inside
    the actor) or ready :class:`AsrBackend` instances.
    """

    name = "asr"

    def __init__(self, backends: list[AsrSpec | dict | AsrBackend] | None = None) -> None:
        specs = list(backends) if backends is not None else list(DEFAULT_SYSTEMS)
        if not specs:
            raise ValueError("AsrStep needs at least one ASR backend")
        self._specs = [AsrSpec(**s) if isinstance(s, dict) else s for s in specs]
        self.backends: list[AsrBackend] = []

    def setup(self) -> None:
        if self.backends:
            return
        for s in self._specs:
            b = s if isinstance(s, AsrBackend) else create_backend(s.backend, s.model, **s.options)
            b.load()
            self.backends.append(b)

    def process(self, item: Item) -> list[Item]:
        return self.process_batch([item])

    def process_batch(self, items: list[Item]) -> list[Item]:
        self.setup()
        audios = [it["audio_16k"] for it in items]
        groups = [it.get("source_uri", i) for i, it in enumerate(items)]
        per_system: list[list[dict]] = []
        for b in self.backends:
            try:
                results = b.transcribe_batch(audios, groups=groups)
            except Exception as e:  # one system failing must not lose the batch silently
                raise ItemError(f"asr:{b.name}", type(e).__name__, str(e)[:500]) from e
            per_system.append(
                [
                    {
                        "system": b.name,
                        "model": b.model_ref,
                        "text": r.text,
                        "normalized": "",
                        "language": r.language or "",
                        "language_prob": _f(r.language_prob),
                        "avg_logprob": _f(r.avg_logprob),
                    }
                    for r in results
                ]
            )
        out = []
        for i, it in enumerate(items):
            new = dict(it)
            new["transcripts"] = list(it.get("transcripts") or []) + [sys[i] for sys in per_system]
            out.append(new)
        return out


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan
