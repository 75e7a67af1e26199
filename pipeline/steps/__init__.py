"""Per-record pipeline steps: each testable without Ray, composed by the Ray job.

Order: DecodeStep -> VadStep (source -> clips with ``audio_16k``) -> LanguageIdStep (per-clip
language, which routes ASR) -> AsrStep per system (batched, model) -> DnsmosStep ->
SpeakerConsistencyStep -> AgreementStep -> TextLanguageStep -> FeatureStep -> TranscriptCheckStep
-> EligibilityStep
-> :func:`to_row` (the manifest row). The model steps run in actor pools; the rest are light.
"""

from accord.core.manifest import to_row
from accord.jobs.step import Item, ItemError, Step
from accord.pipeline.steps.asr import AsrSpec, AsrStep
from accord.pipeline.steps.decode import DecodeStep
from accord.pipeline.steps.dnsmos import DnsmosStep
from accord.pipeline.steps.lid import LanguageIdStep
from accord.pipeline.steps.score import AgreementStep, EligibilityStep, FeatureStep, TranscriptCheckStep
from accord.pipeline.steps.speaker_consistency import SpeakerConsistencyStep
from accord.pipeline.steps.text_language import TextLanguageStep
from accord.pipeline.steps.vad import VadStep

__all__ = [
    "AgreementStep",
    "AsrSpec",
    "AsrStep",
    "DecodeStep",
    "DnsmosStep",
    "EligibilityStep",
    "FeatureStep",
    "Item",
    "ItemError",
    "LanguageIdStep",
    "SpeakerConsistencyStep",
    "Step",
    "TextLanguageStep",
    "TranscriptCheckStep",
    "VadStep",
    "to_row",
]
