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
POST_STEPS: dict[str, tuple[str, str | None]] = {
    "agreement": (f"{_STEPS}.score:AgreementStep", None),
    "features": (f"{_STEPS}.score:FeatureStep", "accord.pipeline.features:FeatureConfig"),
    "eligibility": (f"{_STEPS}.score:EligibilityStep", None),
}


@dataclass(frozen=True)
class Plan:
    source: list[StepSpec]
    asr: dict[str, StepSpec]  # pool name -> step (one actor pool each)
    post: list[StepSpec] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "source": [s.target for s in self.source],
            "asr": {k: v.kwargs.get("backends") for k, v in self.asr.items()},
            "post": [s.target for s in self.post],
        }


def _spec(name: str, paths: tuple[str, str | None], cfg: IngestConfig) -> StepSpec:
    target, config_target = paths
    target = cfg.step_targets.get(name, target)
    return StepSpec(target=target, config_target=config_target, kwargs=dict(cfg.steps.get(name, {})))


def asr_backend(cfg: IngestConfig, system: str) -> dict[str, Any]:
    """The AsrStep backend entry for one system; options from ``steps: {"asr:<system>": {...}}``.

    The backend's intra-op threads default to its actor's CPU reservation (at least one):
    actors that each spin up a thread per core oversubscribe a small machine (on 2 cores,
    whisper + moonshine at 2 threads each ran the job ~15% slower than at 1 each) and a
    large node's cores are shared out by the reservations anyway.
    """
    from accord.pipeline.asr.base import backend_class

    options = dict(cfg.steps.get(f"asr:{system}", {}))
    thread_option = backend_class(system).thread_option
    if thread_option and thread_option not in options:
        options[thread_option] = max(1, round(cfg.asr_num_cpus))
    return {"backend": system, "model": cfg.asr_models[system], "options": options}


def build_plan(cfg: IngestConfig) -> Plan:
    cfg.validate()
    unknown = set(cfg.step_targets) - set(SOURCE_STEPS) - set(POST_STEPS)
    if unknown:
        known = [*SOURCE_STEPS, *POST_STEPS]
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
    return Plan(source=source, asr=asr, post=post)


# What the source steps learn about a file, reported once per source for the run record.
SOURCE_SUMMARY_KEYS = ("source_duration_s", "source_sample_rate", "source_channels", "source_sha256")


def build_graph(plan: Plan, cfg: IngestConfig) -> JobGraph:
    """The runner's graph of an ingest: one clip per row, ASR pools named ``asr:<system>``."""
    pools = [
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
