"""Configuration of an ingest run: which steps, which ASR systems, how Ray sizes them.

A run config is YAML (``--config run.yaml``, flat or under ``ingest:``) with the fields of
:class:`IngestConfig`, loaded by :mod:`accord.core.config` like every job's config;
command-line flags and ``--set`` override it. ``steps`` carries per-step keyword arguments
(VAD lengths, padding, window size...) and ``eligibility`` the stage thresholds, both passed
through to the step classes unchanged so the job never needs to know their knobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from accord.core.config import MERGE_OVER_DEFAULT, did_you_mean, from_dict, load_config, to_dict
from accord.core.eligibility import load_thresholds
from accord.core.errors import ConfigError
from accord.pipeline.asr.base import default_models
from accord.pipeline.sources.listing import DEFAULT_EXTENSIONS

POOL_LAYOUTS = ("auto", "per-model", "fused")


@dataclass
class IngestConfig:
    """Everything that decides what an ingest produces or how fast; recorded in the run record."""

    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    asr: tuple[str, ...] = ("faster-whisper", "moonshine")
    # system -> model reference; default: each registered backend's ``default_model``
    # (pipeline/asr). Merged over the defaults: naming one system's model keeps the others'
    asr_models: dict[str, str] = field(default_factory=default_models, metadata={MERGE_OVER_DEFAULT: True})
    # system -> the registered backend it runs, when the system's name is not a backend's: two
    # NeMo models are two systems, e.g. asr: [faster-whisper, moonshine, nemo-de] with
    # asr_backends: {nemo-de: nemo} and asr_models: {nemo-de: nemo:/models/de.nemo}
    asr_backends: dict[str, str] = field(default_factory=dict)
    # system -> ISO 639-1 codes it transcribes (default: what its backend declares; Moonshine
    # tiny-en: en, Whisper base: any). A clip goes to the systems of its language only.
    asr_languages: dict[str, list[str]] = field(default_factory=dict)
    # Model signals per clip, each an actor pool after VAD (pipeline/job/plan.py SIGNAL_STEPS
    # registers them): "lid" (per-clip language ID, which also routes clips to ASR systems),
    # "dnsmos", "speaker_consistency". Drop one to skip it;
    # its columns stay NaN and a stage threshold on them then fails (fail closed).
    signals: tuple[str, ...] = ("lid", "dnsmos", "speaker_consistency")
    signal_num_cpus: float = 0.5
    signal_concurrency: int = 1
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # step name -> kwargs overrides
    # step name -> "module:Class" replacing a source/post step (same config class), e.g. a
    # site-specific decoder; the module must be importable on every Ray worker.
    step_targets: dict[str, str] = field(default_factory=dict)
    eligibility: dict[str, Any] | None = None  # stage -> threshold overrides
    # Ray sizing. Fractional CPUs on small machines: actors that together claim every CPU
    # starve the read tasks and the dataset hangs (STACK.md).
    num_cpus: int | None = None  # embedded local Ray only; None = all cores
    source_num_cpus: float = 0.5
    asr_num_cpus: float = 0.5
    asr_num_gpus: float = 0.0
    asr_pools: str = "per-system"  # "per-system": one actor pool per ASR system; "shared": one pool
    asr_concurrency: int = 1  # actors per pool
    # How the model steps (signals and ASR systems) are laid out in actors (issue #28):
    # "per-model": one pool per model (signal_*/asr_* sizes); "fused": every model step in each
    # actor, run in order on each batch, ``fused_concurrency`` actors (None: one per cluster CPU)
    # of ``fused_num_cpus`` each (fitted to the cluster). Outputs are the same either way. A run
    # with ``asr_num_gpus`` keeps one pool per model (the GPU pool sized by ``asr_*``). "auto"
    # (default): fused when the cluster's memory holds as many fused actors (each asks for every
    # model) as the per-model pools would keep cores busy, else per-model
    # (:func:`accord.pipeline.job.plan.resolve_layout`). Measured on 2 cores after the post steps
    # moved to an actor (docs/ingest.md "Throughput"): fused 85.6 s, per-model 102 s.
    pool_layout: str = "auto"
    fused_concurrency: int | None = None
    fused_num_cpus: float = 1.0
    # Clips per actor call. None (default): one source's clips per call, so the packed Whisper
    # windows, and with them the transcripts, never depend on how Ray cut the stream into
    # batches: a killed and resumed run yields the same manifest as an uninterrupted one.
    asr_batch_size: int | None = None
    post_num_cpus: float = 0.25
    # Ray Data's target block size in MiB (None: Ray's default, 128). A source's rows stream
    # out of its decode+VAD task in blocks of about this size, which bounds the clip audio a
    # worker holds for an hour-long file; a smaller value also splits shorter sources.
    block_mb: float | None = None
    # Retries when a worker process dies (segfault, OOM kill) on an item. Ray Data's default is
    # to retry forever, so one poison file would hang the job; after these many the block is
    # dropped, its sources are recorded as incomplete (no marker) and the job goes on.
    task_max_retries: int = 2
    actor_max_task_retries: int = 2
    progress: bool = True
    # Dry-run estimates: clips per hour of audio, and audio seconds per wall second per step.
    clips_per_hour: float = 600.0
    rtfx: dict[str, float] = field(
        default_factory=lambda: {
            "decode+vad": 64.0,
            "faster-whisper": 25.0,
            "moonshine": 25.0,
            "nemo": 20.0,
            "lid": 30.0,
            "dnsmos": 4.0,
            "speaker_consistency": 20.0,
        }
    )

    def __post_init__(self) -> None:
        # "WAV", ".wav" and "wav" name the same files
        self.extensions = tuple(e.strip().lstrip(".").lower() for e in self.extensions if e.strip())
        if isinstance(self.signals, str):  # --set signals=lid,dnsmos
            self.signals = tuple(x.strip() for x in self.signals.split(",") if x.strip())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IngestConfig:
        """From a mapping (comma strings work for ``extensions`` and ``asr``); unknown keys fail."""
        return from_dict(cls, d, name="ingest config")

    @classmethod
    def from_yaml(cls, path: str) -> IngestConfig:
        """From a YAML file on any storage, flat or under its ``ingest:`` section."""
        return load_config(cls, path, section="ingest")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def backend_of(self, system: str) -> str:
        """The registered ASR backend a configured system runs."""
        return self.asr_backends.get(system, system)

    def validate(self) -> None:
        """Every value that names something (systems, backends, signals, stages, thresholds) is
        known: a :class:`~accord.core.errors.ConfigError` naming the key and the fix otherwise.
        :func:`accord.pipeline.job.plan.build_plan` checks the ``steps:`` options too."""
        from accord.pipeline.asr.base import available_backends

        if len(self.asr) < 1:
            raise ConfigError("at least one ASR system is needed (two or more for agreement)")
        for name in self.asr:
            backend = self.backend_of(name)
            if backend not in available_backends():
                raise ConfigError(
                    f"ASR system {name!r} runs backend {backend!r}, which is not registered; known: "
                    f"{', '.join(available_backends())} (name a system's backend in asr_backends)"
                )
            if name not in self.asr_models:
                raise ConfigError(
                    f"asr: unknown ASR system {name!r}{did_you_mean(name, self.asr_models)}; known: "
                    f"{', '.join(sorted(self.asr_models))}"
                )
            if backend == "nemo" and not self.asr_models[name]:
                raise ConfigError(f"ASR {name!r} needs a model: set asr_models.{name} to nemo:<path>.nemo")
        for name in (*self.asr_backends, *self.asr_languages):
            if name not in self.asr:
                raise ConfigError(f"asr_backends/asr_languages: {name!r} is not in asr {list(self.asr)}")
        from accord.pipeline.job.plan import SIGNAL_STEPS  # the registered signals

        unknown = sorted(set(self.signals) - set(SIGNAL_STEPS))
        if unknown:
            named = ", ".join(f"{s!r}{did_you_mean(s, SIGNAL_STEPS)}" for s in unknown)
            raise ConfigError(f"signals: unknown signal(s) {named}; known: {', '.join(SIGNAL_STEPS)}")
        load_thresholds(self.eligibility, path="eligibility")  # a typo fails here, not in a worker
        if self.signal_concurrency < 1:
            raise ConfigError("signal_concurrency must be >= 1")
        if self.pool_layout not in POOL_LAYOUTS:
            raise ConfigError(
                f"pool_layout must be one of {', '.join(POOL_LAYOUTS)}, not {self.pool_layout!r}"
            )
        if (self.fused_concurrency is not None and self.fused_concurrency < 1) or self.fused_num_cpus <= 0:
            raise ConfigError("fused_concurrency must be >= 1 (or null) and fused_num_cpus > 0")
        if self.asr_pools not in ("per-system", "shared"):
            raise ConfigError(f"asr_pools must be 'per-system' or 'shared', not {self.asr_pools!r}")
        if self.block_mb is not None and self.block_mb <= 0:
            raise ConfigError("block_mb must be > 0 (or null for Ray's default)")
        if (self.asr_batch_size is not None and self.asr_batch_size < 1) or self.asr_concurrency < 1:
            raise ConfigError("asr_batch_size and asr_concurrency must be >= 1")
