"""Configuration of an ingest run: which steps, which ASR systems, how Ray sizes them.

A run config is YAML (``--config run.yaml``) with the fields of :class:`IngestConfig`;
command-line flags override it. ``steps`` carries per-step keyword arguments (VAD lengths,
padding, window size...) and ``eligibility`` the stage thresholds, both passed through to the
step classes unchanged so the job never needs to know their knobs.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any

from accord.pipeline.io.listing import DEFAULT_EXTENSIONS
from accord.pipeline.steps.base import Step

# ASR backend name -> default model reference (resolved by accord.weights in the step).
DEFAULT_ASR_MODELS: dict[str, str] = {
    "faster-whisper": "whisper:base",
    "moonshine": "moonshine:tiny-en",
    "nemo": "",
}


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class StepSpec:
    """A step class by import path, its config class and the config's fields (picklable).

    Built inside the Ray worker: ``Step(config=Config(**kwargs))`` (or ``Step(**kwargs)``
    when the step has no config class), then ``setup()`` once.
    """

    target: str  # "package.module:StepClass"
    config_target: str | None = None  # "package.module:ConfigClass"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Step:
        cls = _load(self.target)
        if self.config_target:
            step = cls(config=_load(self.config_target)(**self.kwargs))
        else:
            step = cls(**self.kwargs)
        step.setup()
        return step

    @property
    def label(self) -> str:
        return self.target.rpartition(":")[2]


@dataclass
class IngestConfig:
    """Everything that decides what an ingest produces or how fast; recorded in the run record."""

    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    asr: tuple[str, ...] = ("faster-whisper", "moonshine")
    asr_models: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ASR_MODELS))
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
        default_factory=lambda: {"decode+vad": 64.0, "faster-whisper": 25.0, "moonshine": 25.0, "nemo": 20.0}
    )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IngestConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"unknown ingest config keys: {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        kw = dict(d)
        for k in ("extensions", "asr"):
            if k in kw and isinstance(kw[k], str):
                kw[k] = tuple(x.strip() for x in kw[k].split(",") if x.strip())
            elif k in kw:
                kw[k] = tuple(kw[k])
        if "asr_models" in kw:
            kw["asr_models"] = {**DEFAULT_ASR_MODELS, **kw["asr_models"]}
        return cls(**kw)

    @classmethod
    def from_yaml(cls, path: str) -> IngestConfig:
        import yaml
        from accord.pipeline.io.fs import open_fs

        fs, p = open_fs(path)
        with fs.open(p, "rt") as f:
            data = yaml.safe_load(f) or {}
        return cls.from_dict(data.get("ingest", data))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if len(self.asr) < 1:
            raise ValueError("at least one ASR system is needed (two or more for agreement)")
        for name in self.asr:
            if name not in self.asr_models:
                raise ValueError(f"unknown ASR system {name!r}; known: {', '.join(sorted(self.asr_models))}")
            if name == "nemo" and not self.asr_models[name]:
                raise ValueError("ASR 'nemo' needs a model: set asr_models.nemo to nemo:<path>.nemo")
        if self.asr_pools not in ("per-system", "shared"):
            raise ValueError(f"asr_pools must be 'per-system' or 'shared', not {self.asr_pools!r}")
        if self.block_mb is not None and self.block_mb <= 0:
            raise ValueError("block_mb must be > 0 (or null for Ray's default)")
        if (self.asr_batch_size is not None and self.asr_batch_size < 1) or self.asr_concurrency < 1:
            raise ValueError("asr_batch_size and asr_concurrency must be >= 1")
