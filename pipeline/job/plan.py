"""Which step classes an ingest composes, in order, from an :class:`IngestConfig`.

Three groups, matching how the job runner (:mod:`accord.jobs`) runs them: *source* steps
(decode + VAD, CPU tasks, one source in, many clips out), *model* pools (the signals and one
actor pool per ASR system, batched), and *post* steps (agreement, features, eligibility; light
CPU tasks). The tables below name the step classes (``accord.pipeline.steps``) and their config
dataclasses; a run config can only replace a step by import path (``step_targets``).

The plan is checked and ordered from the steps' declarations (:class:`~accord.jobs.step.Step`,
:mod:`accord.jobs.contract`) before anything runs: every name a step writes is a ``CLIP_SCHEMA``
column, every key it reads is written by an earlier step (or is in the source's unit item), a
signal runs before the ASR pools exactly when they read what it writes (LID routes them, speaker
consistency splits clips), and the post steps run in the dependency order of what they read,
stable with respect to the table's order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from accord.core.clip import CLIP_SCHEMA
from accord.core.config import did_you_mean
from accord.core.errors import ConfigError
from accord.jobs.contract import Declared, check_columns, check_reads, needs, order
from accord.jobs.graph import MEMORY_ROOM, JobGraph, PoolSpec, fuse_pools
from accord.jobs.spec import StepSpec
from accord.jobs.step import Step
from accord.pipeline.dnsmos import DnsmosConfig
from accord.pipeline.features import FeatureConfig
from accord.pipeline.job.config import IngestConfig
from accord.pipeline.lid import LanguageIdConfig
from accord.pipeline.speaker_consistency import SpeakerConsistencyConfig
from accord.pipeline.steps.asr import AsrStep
from accord.pipeline.steps.decode import DecodeConfig, DecodeStep
from accord.pipeline.steps.dnsmos import DnsmosStep
from accord.pipeline.steps.lid import LanguageIdStep
from accord.pipeline.steps.score import (
    AgreementStep,
    EligibilityConfig,
    EligibilityStep,
    FeatureStep,
    TranscriptCheckStep,
)
from accord.pipeline.steps.speaker_consistency import SpeakerConsistencyStep
from accord.pipeline.steps.text_language import TextLanguageStep
from accord.pipeline.steps.vad import VadStep
from accord.pipeline.text_lid import TextLanguageIdConfig
from accord.pipeline.transcript_checks import CheckConfig
from accord.pipeline.vad import VadConfig

# step name -> (Step class, its config dataclass or None when the step takes no options)
StepEntry = tuple[type[Step], type | None]
SOURCE_STEPS: dict[str, StepEntry] = {
    "decode": (DecodeStep, DecodeConfig),
    "vad": (VadStep, VadConfig),
}
ASR_STEP: type[Step] = AsrStep
# signal -> step: model pools after VAD; the table's order, except that the ones the ASR pools
# read run before them. A config with a ``threads`` field gets its pool's CPUs as threads.
SIGNAL_STEPS: dict[str, StepEntry] = {
    "speaker_consistency": (SpeakerConsistencyStep, SpeakerConsistencyConfig),
    "lid": (LanguageIdStep, LanguageIdConfig),
    "dnsmos": (DnsmosStep, DnsmosConfig),
}
# the post steps; run in the order their reads need (transcript_checks reads the silences the
# features measure), else this one
POST_STEPS: dict[str, StepEntry] = {
    "agreement": (AgreementStep, None),
    "text_language": (TextLanguageStep, TextLanguageIdConfig),
    "features": (FeatureStep, FeatureConfig),
    "transcript_checks": (TranscriptCheckStep, CheckConfig),
    "eligibility": (EligibilityStep, EligibilityConfig),
}
# What the first (decode) step receives per source (pipeline/job/runner.py: source_unit).
UNIT_KEYS: tuple[str, ...] = ("source_uri", "source_size", "source_fingerprint", "source_key")
# Option names of earlier releases: one spelling now (a config naming an old one is refused).
RENAMED_OPTIONS: dict[str, str] = {
    "model_ref": "model",
    "weights": "model",
    "model_path": "model",
    "cpu_threads": "threads",
}
THREADS = "threads"  # the intra-op threads option of every model step and ASR backend


@dataclass(frozen=True)
class Plan:
    source: list[StepSpec]
    asr: dict[str, StepSpec]  # pool name -> step (one actor pool each)
    post: list[StepSpec] = field(default_factory=list)
    # signal -> step, in run order: those in ``before_asr`` (LID routes the ASR pools, speaker
    # consistency splits clips before they are transcribed), then the others after ASR
    signals: dict[str, StepSpec] = field(default_factory=dict)
    before_asr: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "source": [s.path for s in self.source],
            "signals": {k: v.path for k, v in self.signals.items()},
            "asr": {k: v.kwargs.get("backends") for k, v in self.asr.items()},
            "post": [s.path for s in self.post],
        }


def check_spelling(name: str, options: dict[str, Any]) -> None:
    """An option of an earlier release's spelling is a one-line error naming the new key."""
    for key in options:
        if key in RENAMED_OPTIONS:
            raise ConfigError(f"steps.{name}: option {key!r} is now spelt {RENAMED_OPTIONS[key]!r}")


def check_options(name: str, config: type | None, options: dict[str, Any]) -> None:
    """``steps: {<name>: options}`` against the step's config dataclass: an old spelling or an
    unknown option is a one-line error here, before any worker builds the step."""
    check_spelling(name, options)
    if config is None:
        if options:
            raise ConfigError(f"steps.{name}: this step takes no options, got {sorted(options)}")
        return
    if is_dataclass(config):
        known = [f.name for f in fields(config)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            hints = "".join(did_you_mean(k, known) for k in unknown)
            raise ConfigError(f"steps.{name}: unknown option(s) {unknown}{hints}; known: {known}")
        try:  # a config that checks its values (``__post_init__``) says what is wrong here too
            config(**options)
        except ValueError as e:
            raise ConfigError(f"steps.{name}: {e}") from None
        except TypeError:  # a required field the plan fills in later
            pass


def _spec(name: str, entry: StepEntry, cfg: IngestConfig) -> StepSpec:
    step, config = entry
    options = dict(cfg.steps.get(name, {}))
    check_options(name, config, options)
    return StepSpec(cfg.step_targets.get(name, step), config, options)


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
    cls = backend_class(backend)
    if cls.options_class is not None:  # else (NeMo) the backend reads what it knows
        check_options(f"asr:{system}", cls.options_class, options)
    else:
        check_spelling(f"asr:{system}", options)
    thread_option = cls.thread_option
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
# Its windows go through the network two per run: one window costs the same alone or in 16
# (0.38 s on one core in fp32, 0.24 s in bf16), and 16 at once held ~1.2 GiB of activations.
SIGNAL_DEFAULTS: dict[str, dict[str, Any]] = {"dnsmos": {"max_windows": 1, "batch_windows": 2}}


def signal_spec(cfg: IngestConfig, signal: str) -> StepSpec:
    """A signal's step with its ``steps: {<signal>: {...}}`` options; threads from the pool's CPUs."""
    step, config = SIGNAL_STEPS[signal]
    options = cfg.steps.get(signal, {})
    check_options(signal, config, options)
    kwargs = {**SIGNAL_DEFAULTS.get(signal, {}), **options}
    if config is not None and THREADS in {f.name for f in fields(config)} and THREADS not in kwargs:
        kwargs[THREADS] = threads_for(cfg.signal_num_cpus)
    return StepSpec(cfg.step_targets.get(signal, step), config, kwargs)


def declared(name: str, spec: StepSpec) -> Declared:
    return Declared.of(name, spec.step_class)


def signals_before_asr(signals: dict[str, StepSpec], asr: dict[str, StepSpec]) -> list[str]:
    """The signals whose outputs the ASR pools read, directly or through another such signal."""
    decl = {n: declared(n, s) for n, s in signals.items()}
    readers = [declared(f"asr:{n}", s) for n, s in asr.items()]
    before: list[str] = []
    changed = True
    while changed:
        changed = False
        for n, d in decl.items():
            if n not in before and any(needs(r, d) for r in readers):
                before.append(n)
                readers.append(d)
                changed = True
    return [n for n in signals if n in before]


def check_plan(steps: list[tuple[str, StepSpec]]) -> None:
    """The declarations of a plan's steps, by name in run order: every written name is a
    ``CLIP_SCHEMA`` column and every read is written earlier (or is in the unit item)."""
    declared_steps = [declared(n, s) for n, s in steps]
    check_columns(declared_steps, CLIP_SCHEMA, "CLIP_SCHEMA")
    check_reads(declared_steps, UNIT_KEYS)


def check_step_names(cfg: IngestConfig) -> None:
    """Every name under ``steps:`` and ``step_targets:`` is a step (``asr:<system>`` for an ASR
    system): a typo is a one-line error naming the closest step, never a silently unused key."""
    known = [*SOURCE_STEPS, *SIGNAL_STEPS, *POST_STEPS]
    systems = sorted({*cfg.asr, *cfg.asr_models, *cfg.asr_backends})
    for key, names in (("step_targets", known), ("steps", [*known, *(f"asr:{s}" for s in systems)])):
        for name in sorted(set(getattr(cfg, key)) - set(names)):
            raise ConfigError(
                f"{key}.{name}: unknown step{did_you_mean(name, names)}; known: {', '.join(names)}"
            )


def build_plan(cfg: IngestConfig) -> Plan:
    """The run's steps from ``cfg``, every key and option checked first (on the driver, before
    any worker starts): a user's typo is a :class:`~accord.core.errors.ConfigError`."""
    cfg.validate()
    check_step_names(cfg)
    source = {n: _spec(n, entry, cfg) for n, entry in SOURCE_STEPS.items()}
    if cfg.asr_pools == "shared":  # one actor runs every system on each batch
        asr = {"asr": StepSpec(ASR_STEP, None, {"backends": [asr_backend(cfg, s) for s in cfg.asr]})}
    else:  # one actor pool per system: the systems run concurrently on different batches
        asr = {s: StepSpec(ASR_STEP, None, {"backends": [asr_backend(cfg, s)]}) for s in cfg.asr}
    post = {}
    for name, entry in POST_STEPS.items():
        spec = _spec(name, entry, cfg)
        if name == "eligibility" and cfg.eligibility:
            spec = StepSpec(spec.target, spec.config_target, {**spec.kwargs, "thresholds": cfg.eligibility})
        post[name] = spec
    # in the table's order, whatever order the config lists them; the ones ASR reads first
    signals = {name: signal_spec(cfg, name) for name in SIGNAL_STEPS if name in cfg.signals}
    before = signals_before_asr(signals, asr)

    def ordered(specs: dict[str, StepSpec], names: list[str]) -> list[str]:
        return [d.name for d in order([declared(n, specs[n]) for n in names])]

    first = ordered(signals, before)
    then = ordered(signals, [n for n in signals if n not in before])
    post_names = ordered(post, list(post))
    check_plan(
        [
            *source.items(),
            *((n, signals[n]) for n in first),
            *((f"asr:{n}", s) for n, s in asr.items()),
            *((n, signals[n]) for n in then),
            *((n, post[n]) for n in post_names),
        ]
    )
    return Plan(
        source=list(source.values()),
        asr=asr,
        post=[post[n] for n in post_names],
        signals={n: signals[n] for n in (*first, *then)},
        before_asr=tuple(first),
    )


# What the source steps learn about a file, reported once per source for the run record.
SOURCE_SUMMARY_KEYS = ("source_duration_s", "source_sample_rate", "source_channels", "source_sha256")


# Memory each model's actor asks Ray for (MiB): the worker process itself (Ray, pyarrow, numpy
# and the step's runtime: ONNX Runtime or CTranslate2; ~130-250 MiB) plus the model loaded and
# running clips, with the 25 % headroom Ray's memory check asks for. The speaker model imports
# torch (~250-400 MiB of it is counted in its entry), and so does DNSMOS where its network runs
# in bf16 (`precision: auto` on a CPU with native bf16: +250 MiB of peak RSS measured, 880 MiB
# against 630 for ONNX Runtime alone, so its entry counts torch too). Measured as each actor's peak RSS
# over an ingest of this repo's sample bucket on 2 cores (ps, sampled every second): speaker
# 1053, DNSMOS 734 (two windows per run), LID 564, Whisper 488, Moonshine 395 MiB. Before the
# step package stopped importing torch in every worker, the same actors peaked 160-180 MiB
# higher (LID 726, DNSMOS 909). A fused actor asks for the worker once plus each model.
WORKER_MB = 250.0
MODEL_MB: dict[str, float] = {
    "speaker_consistency": 1070.0,  # torch, GE2E (resemblyzer's weights), segmentation-3.0
    "dnsmos": 920.0,  # two windows per run (the ingest's default), torch; 16 held ~1.2 GiB more
    "lid": 460.0,
    "faster-whisper": 360.0,
    "moonshine": 250.0,
    "nemo": 1800.0,  # not measured here: a Conformer model's order of magnitude, with torch
}
DEFAULT_MODEL_MB = 500.0  # a step or backend not in the table


def model_memory_mb(pool_name: str, cfg: IngestConfig) -> float:
    """The model memory of a pool: a signal's entry, or the sum over its ASR systems' backends."""
    if pool_name.startswith("asr:") or pool_name == "asr":
        systems = cfg.asr if pool_name == "asr" else (pool_name[4:],)
        return sum(MODEL_MB.get(cfg.backend_of(s), DEFAULT_MODEL_MB) for s in systems)
    return MODEL_MB.get(pool_name, DEFAULT_MODEL_MB)


def fused_memory_mb(pools: list[PoolSpec], cfg: IngestConfig) -> float:
    """What a fused actor asks for: the worker process once, not once per model, plus every model."""
    return WORKER_MB + sum(model_memory_mb(p.name, cfg) for p in pools)


def fused_actors(cfg: IngestConfig, fused_mb: float, cpus: float | None, memory_mb: float | None) -> int:
    """Actors of a fused pool: ``fused_concurrency``, else one per CPU (``cpus``: the cluster's;
    None: the configured ``num_cpus``), and with ``pool_layout: auto`` no more than fit in
    :data:`~accord.jobs.graph.MEMORY_ROOM` of the cluster's memory (``memory_mb``; 0 or None:
    unknown) at ``fused_mb`` each."""
    n = cfg.fused_concurrency or max(1, int(cpus or cfg.num_cpus or 1))
    if cfg.pool_layout == "auto" and memory_mb:
        n = min(n, int(MEMORY_ROOM * memory_mb // fused_mb))
    return n


def resolve_layout(
    cfg: IngestConfig, pools: list[PoolSpec], cpus: float | None, memory_mb: float | None
) -> str:
    """``cfg.pool_layout``, with ``auto`` decided for this cluster: ``fused`` when its actors
    keep at least as many cores busy as the per-model pools would (one per pool actor, at most
    the CPUs) and fit in memory; ``per-model`` when memory holds too few fused actors. Any
    layout is per-model on GPUs: an actor per CPU each asking for a GPU would wait for GPUs that
    are not there (the GPU pool is sized by ``asr_*``)."""
    if cfg.asr_num_gpus or not pools:
        return "per-model"
    if cfg.pool_layout != "auto":
        return cfg.pool_layout
    fused_mb = fused_memory_mb(pools, cfg)
    per_model_busy = min(sum(p.concurrency for p in pools), int(cpus or cfg.num_cpus or 1))
    return "fused" if fused_actors(cfg, fused_mb, cpus, memory_mb) >= max(1, per_model_busy) else "per-model"


def build_graph(
    plan: Plan, cfg: IngestConfig, cpus: float | None = None, memory_mb: float | None = None
) -> JobGraph:
    """The runner's graph of an ingest: one clip per row; the speaker and LID pools, then the ASR
    pools (named ``asr:<system>``), then DNSMOS; with a fused layout (:func:`resolve_layout`)
    all of them and the post steps in each actor of one pool (``cpus``, ``memory_mb``: the
    cluster's)."""

    def signal_pool(name: str) -> PoolSpec:
        return PoolSpec(
            name,
            plan.signals[name],
            concurrency=cfg.signal_concurrency,
            num_cpus=cfg.signal_num_cpus,
            batch_size=cfg.asr_batch_size,
            memory_mb=WORKER_MB + model_memory_mb(name, cfg),
        )

    asr_pools = [
        PoolSpec(
            f"asr:{name}",
            spec,
            concurrency=cfg.asr_concurrency,
            num_cpus=cfg.asr_num_cpus,
            num_gpus=cfg.asr_num_gpus,
            batch_size=cfg.asr_batch_size,
            memory_mb=WORKER_MB + model_memory_mb(f"asr:{name}", cfg),
        )
        for name, spec in plan.asr.items()
    ]
    # before ASR: speaker consistency (it splits a clip at one clear change of voice, and each
    # part is then transcribed) and LID (it routes the ASR pools)
    first = [signal_pool(n) for n in plan.signals if n in plan.before_asr]
    after = [signal_pool(n) for n in plan.signals if n not in plan.before_asr]
    pools = [*first, *asr_pools, *after]
    fused = resolve_layout(cfg, pools, cpus, memory_mb) == "fused"
    if fused:
        fused_mb = fused_memory_mb(pools, cfg)
        n = fused_actors(cfg, fused_mb, cpus, memory_mb)
        pools = [replace(fuse_pools(pools, concurrency=n, num_cpus=cfg.fused_num_cpus), memory_mb=fused_mb)]
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
        post_in_pool=fused,  # every fused actor runs the post steps too: no post actor
    )
