"""Per-record pipeline steps: each testable without Ray, composed by the Ray job.

Order: DecodeStep -> VadStep (source -> clips with ``audio_16k``) -> AsrStep (batched, model)
-> AgreementStep -> FeatureStep -> EligibilityStep -> :func:`to_row` (the manifest row).
"""

from accord.jobs.step import Item, ItemError, Step
from accord.pipeline.steps.asr import AsrSpec, AsrStep
from accord.pipeline.steps.decode import DecodeStep
from accord.pipeline.steps.row import to_row
from accord.pipeline.steps.score import AgreementStep, EligibilityStep, FeatureStep
from accord.pipeline.steps.vad import VadStep

__all__ = [
    "AgreementStep",
    "AsrSpec",
    "AsrStep",
    "DecodeStep",
    "EligibilityStep",
    "FeatureStep",
    "Item",
    "ItemError",
    "Step",
    "VadStep",
    "to_row",
]
