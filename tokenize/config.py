"""What a tokenize run takes and produces and how it is sized: clip selection, models, crops,
shards and Ray resources.

The ``tokenize:`` section of a run file (or a flat file given to ``accord tokenize run
--config``) holds these fields, loaded by :mod:`accord.core.config`; flags and ``--set``
override it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from accord.core.shards import ShardConfig
from accord.core.stages import stage_index
from accord.core.vocab import VocabConfig
from accord.tokenize.augment import AugmentConfig
from accord.tokenize.codec import CodecConfig
from accord.tokenize.speaker import SpeakerConfig

EXECUTORS: tuple[str, ...] = ("ray", "local")


@dataclass
class TokenizeConfig:
    # Which manifest clips: eligible for min_stage, thresholds re-applied at read time.
    min_stage: str = "pretrain"
    eligibility: str | dict[str, Any] | None = None  # thresholds YAML or {stage: {...}}; None: built-in
    reapply: bool = True  # False: trust the manifest's stored eligible_* columns
    codec: CodecConfig = field(default_factory=CodecConfig)
    speaker: SpeakerConfig = field(default_factory=SpeakerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    # transcripts in their spoken form, as the release serves text (accord.tokenize.textnorm)
    text_normalization: bool = True
    crop_fraction: float = 0.3  # of the clip, clamped to crop_seconds
    crop_seconds: tuple[float, float] = (1.0, 3.0)
    min_clip_seconds: float = 0.3
    max_short_read_s: float = 0.05  # a source shorter than the clip by more than this is an error
    verify_sha256: bool = False  # re-hash each source once per worker and compare with the manifest
    batch_size: int = 8  # clips per model batch
    executor: str = "ray"  # one of EXECUTORS
    num_cpus: int | None = None  # embedded local Ray only; None = all cores
    torch_threads: int = 2
    # Ray resources (fractional CPUs on small machines; num_gpus on a cluster).
    read_num_cpus: float = 0.25
    dac_actors: int = 1
    dac_num_cpus: float = 1.0
    dac_num_gpus: float = 0.0
    speaker_actors: int = 1
    speaker_num_cpus: float = 0.5
    speaker_num_gpus: float = 0.0

    def __post_init__(self) -> None:
        # fail when the config is read, not after the manifest scan
        stage_index(self.min_stage)
        if self.executor not in EXECUTORS:
            raise ValueError(f"unknown executor {self.executor!r}; expected one of {', '.join(EXECUTORS)}")
