"""Which step classes an ingest composes, in order, from an :class:`IngestConfig`.

Three groups, matching how the job runner (:mod:`accord.jobs`) runs them: *source* steps
(decode + VAD, CPU tasks, one source in, many clips out), *ASR* steps (one actor pool per
system, batched), and *post* steps (agreement, features, eligibility; light CPU tasks). Step
classes live in ``accord.pipeline.steps``; the job only knows their import paths and config
classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from accord.jobs.graph import JobGraph, PoolSpec
from accord.jobs.spec import StepSpec
from accord.pipeline.job.config import IngestConfig

_STEPS = "accord.pipeline.steps"

# step name -> (Step class, its config dataclass or None when the step takes plain kwargs)
SOURCE_STEPS: dict[str, tuple[str, str | None]] = {
    "decode": (f"{_STEPS}.decode:DecodeStep", f"{_STEPS}.decode:DecodeConfig"),
    "vad": (f"{_STEPS}.vad:VadStep", "accord.pipeline.vad:VadConfig"),
}
ASR_STEP = f"{_STEPS}.asr:AsrStep"
# signal -> (Step class, config class, the config field for intra-op threads): model pools after
# VAD, in the order they run
SIGNAL_STEPS: dict[str, tuple[str, str, str | None]] = {
    "speaker_consistency": (
        f"{_STEPS}.speaker_consistency:SpeakerConsistencyStep",
        "accord.pipeline.speaker_consistency:SpeakerConsistencyConfig",
        None,
    ),
    "lid": (f"{_STEPS}.lid:LanguageIdStep", "accord.pipeline.lid:LanguageIdConfig", "cpu_threads"),
    "dnsmos": (f"{_STEPS}.dnsmos:DnsmosStep", "accord.pipeline.dnsmos:DnsmosConfig", "threads"),
}
BEFORE_ASR: tuple[str, ...] = ("speaker_consistency", "lid")
POST_STEPS: dict[str, tuple[str, str | None]] = {
    "agreement": (f"{_STEPS}.score:AgreementStep", None),
    "text_language": (
        f"{_STEPS}.text_language:TextLanguageStep",
        "accord.pipeline.text_lid:TextLanguageIdConfig",
    ),
    "features": (f"{_STEPS}.score:FeatureStep", "accord.pipeline.features:FeatureConfig"),
    "transcript_checks": (f"{_STEPS}.score:TranscriptCheckStep", None),  # reads the features' silences
    "eligibility": (f"{_STEPS}.score:EligibilityStep", None),
}


@dataclass(frozen=True)
class Plan:
    source: list[StepSpec]
    asr: dict[str, StepSpec]  # pool name -> step (one actor pool each)
    post: list[StepSpec] = field(default_factory=list)
    # signal -> step: "lid" runs before the ASR pools (it routes them), the others after
    signals: dict[str, StepSpec] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "source": [s.target for s in self.source],
            "signals": {k: v.target for k, v in self.signals.items()},
            "asr": {k: v.kwargs.get("backends") for k, v in self.asr.items()},
            "post": [s.target for s in self.post],
        }


def _spec(name: str, paths: tuple[str, str | None], cfg: IngestConfig) -> StepSpec:
    target, config_target = paths
    target = cfg.step_targets.get(name, target)
    return StepSpec(target=target, config_target=config_target, kwargs=dict(cfg.steps.get(name, {})))


def threads_for(num_cpus: float) -> int:
    """A model's intra-op threads from its actor's CPU reservation (at least one)."""
    return max(1, round(num_cpus))


def asr_backend(cfg: IngestConfig, system: str) -> dict[str, Any]:
    """The AsrStep backend entry for one system; options from ``steps: {"asr:<system>": {...}}``.

    The backend's intra-op threads default to its actor's CPU reservation (at least one):
    actors that each spin up a thread per core oversubscribe a small machine (on 2 cores,
    whisper + moonshine at 2 threads each ran the job ~15% slower than at 1 each) and a
    large node's cores are shared out by the reservations anyway.
    """
    from accord.pipeline.asr.base import backend_class

    backend = cfg.backend_of(system)
    options = dict(cfg.steps.get(f"asr:{system}", {}))
    thread_option = backend_class(backend).thread_option
    if thread_option and thread_option not in options:
        options[thread_option] = threads_for(cfg.asr_num_cpus)
    languages = cfg.asr_languages.get(system)
    return {
        "backend": backend,
        "model": cfg.asr_models[system],
        "options": options,
        "system": system,
        "languages": None if languages is None else list(languages),
    }


# An ingest's defaults where they differ from the library's: DNSMOS scores one 9 s window per
# clip (most clips are shorter and tiled, so more windows repeat the same audio): 0.26 s instead
# of 1.7 s per clip on 2 cores, OVRL within 0.04 on average (0.10 at most) of every window's mean.
# `steps: {dnsmos: {max_windows: null}}` restores the reference.
SIGNAL_DEFAULTS: dict[str, dict[str, Any]] = {"dnsmos": {"max_windows": 1}}


def signal_spec(cfg: IngestConfig, signal: str) -> StepSpec:
    """A signal's step with its ``steps: {<signal>: {...}}`` options; threads from the pool's CPUs."""
    target, config_target, thread_field = SIGNAL_STEPS[signal]
    kwargs = {**SIGNAL_DEFAULTS.get(signal, {}), **cfg.steps.get(signal, {})}
    if thread_field and thread_field not in kwargs:
        kwargs[thread_field] = threads_for(cfg.signal_num_cpus)
    return StepSpec(cfg.step_targets.get(signal, target), config_target, kwargs)


def build_plan(cfg: IngestConfig) -> Plan:
    cfg.validate()
    unknown = set(cfg.step_targets) - set(SOURCE_STEPS) - set(POST_STEPS) - set(SIGNAL_STEPS)
    if unknown:
        known = [*SOURCE_STEPS, *SIGNAL_STEPS, *POST_STEPS]
        raise ValueError(f"step_targets: unknown step(s) {sorted(unknown)}; known: {known}")
    source = [_spec(n, p, cfg) for n, p in SOURCE_STEPS.items()]
    if cfg.asr_pools == "shared":  # one actor runs every system on each batch
        asr = {"asr": StepSpec(ASR_STEP, None, {"backends": [asr_backend(cfg, s) for s in cfg.asr]})}
    else:  # one actor pool per system: the systems run concurrently on different batches
        asr = {s: StepSpec(ASR_STEP, None, {"backends": [asr_backend(cfg, s)]}) for s in cfg.asr}
    post = []
    for name, paths in POST_STEPS.items():
        spec = _spec(name, paths, cfg)
        if name == "eligibility" and cfg.eligibility:
            spec = StepSpec(spec.target, None, {"thresholds": cfg.eligibility})
        post.append(spec)
    # in pipeline order, whatever order the config lists them
    signals = {name: signal_spec(cfg, name) for name in SIGNAL_STEPS if name in cfg.signals}
    return Plan(source=source, asr=asr, post=post, signals=signals)


# What the source steps learn about a file, reported once per source for the run record.
SOURCE_SUMMARY_KEYS = ("source_duration_s", "source_sample_rate", "source_channels", "source_sha256")


def build_graph(plan: Plan, cfg: IngestConfig) -> JobGraph:
    """The runner's graph of an ingest: one clip per row; the speaker and LID pools, then the ASR
    pools (named ``asr:<system>``), then DNSMOS."""

    def signal_pool(name: str) -> PoolSpec:
        return PoolSpec(
            name,
            plan.signals[name],
            concurrency=cfg.signal_concurrency,
            num_cpus=cfg.signal_num_cpus,
            batch_size=cfg.asr_batch_size,
        )

    asr_pools = [
        PoolSpec(
            f"asr:{name}",
            spec,
            concurrency=cfg.asr_concurrency,
            num_cpus=cfg.asr_num_cpus,
            num_gpus=cfg.asr_num_gpus,
            batch_size=cfg.asr_batch_size,
        )
        for name, spec in plan.asr.items()
    ]
    # before ASR: speaker consistency (it splits a clip at one clear change of voice, and each
    # part is then transcribed) and LID (it routes the ASR pools)
    first = [signal_pool(n) for n in plan.signals if n in BEFORE_ASR]
    after = [signal_pool(n) for n in plan.signals if n not in BEFORE_ASR]
    pools = [*first, *asr_pools, *after]
    return JobGraph(
        source=plan.source,
        pools=pools,
        post=plan.post,
        summary_keys=SOURCE_SUMMARY_KEYS,
        source_num_cpus=cfg.source_num_cpus,
        post_num_cpus=cfg.post_num_cpus,
        task_max_retries=cfg.task_max_retries,
        actor_max_task_retries=cfg.actor_max_task_retries,
        block_mb=cfg.block_mb,
        progress=cfg.progress,
    )
