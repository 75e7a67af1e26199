"""Per-record pipeline steps: each testable without Ray, composed by the Ray job.

Order: DecodeStep -> VadStep (source -> clips with ``audio_16k``) -> LanguageIdStep (per-clip
language, which routes ASR) -> AsrStep per system (batched, model) -> DnsmosStep ->
SpeakerConsistencyStep -> AgreementStep -> TextLanguageStep -> FeatureStep -> TranscriptCheckStep
-> EligibilityStep
-> :func:`to_row` (the manifest row). The model steps run in actor pools; the rest are light.

The names below are imported on first use (PEP 562): every Ray worker imports one step's module,
and importing them all (torch, scipy.signal, every backend) cost each actor ~3.5 s of CPU at
start-up, paid by every pool of every ingest.
"""

from __future__ import annotations

import importlib
from typing import Any

# exported name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "to_row": "accord.core.manifest",
    "Item": "accord.jobs.step",
    "ItemError": "accord.jobs.step",
    "Step": "accord.jobs.step",
    "AsrSpec": "accord.pipeline.steps.asr",
    "AsrStep": "accord.pipeline.steps.asr",
    "DecodeStep": "accord.pipeline.steps.decode",
    "DnsmosStep": "accord.pipeline.steps.dnsmos",
    "LanguageIdStep": "accord.pipeline.steps.lid",
    "AgreementStep": "accord.pipeline.steps.score",
    "EligibilityStep": "accord.pipeline.steps.score",
    "FeatureStep": "accord.pipeline.steps.score",
    "TranscriptCheckStep": "accord.pipeline.steps.score",
    "SpeakerConsistencyStep": "accord.pipeline.steps.speaker_consistency",
    "TextLanguageStep": "accord.pipeline.steps.text_language",
    "VadStep": "accord.pipeline.steps.vad",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
