"""The tokenize job: manifest -> DAC codes + ECAPA embeddings -> WebDataset shards.

Read the manifest with stage eligibility re-applied, keep clips eligible for ``min_stage``,
plan shards (sorted clip ids, chunked), skip finished shards, refuse models that would mix
with what the shards already hold, then run the rest on the job runner (:mod:`accord.jobs`):
each pending shard is a unit whose clips stream through read, DAC and ECAPA
(:mod:`accord.tokenize.steps`) into its ``ShardWriter`` (:mod:`accord.tokenize.sink`), which
publishes the shard the moment its last clip arrives. Last, the index, ``tokenize.json`` and
the run record. ``executor="ray"`` runs the graph on Ray (``address`` or ``RAY_ADDRESS`` joins a
cluster), ``"local"`` in this process with the same batches and results.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import pyarrow as pa

from accord.core.lock import OutputLock
from accord.core.runs import RUNS_DIR, build_record, new_run_id, write_run_record
from accord.core.shards import (
    ERRORS_DIR,
    PARTS_DIR,
    RANDOM_WEIGHTS_KEY,
    SHARDS_DIR,
    is_done,
    plan_shards,
    remove_stale,
    shard_name,
    write_index,
    write_tokenize_json,
)
from accord.core.storage import Store
from accord.core.weights import choose_weights
from accord.jobs.driver import drive
from accord.jobs.graph import JobGraph, PoolSpec, iter_ray
from accord.jobs.local import iter_local
from accord.jobs.ray_init import init_ray
from accord.jobs.rows import Unit
from accord.jobs.spec import StepSpec
from accord.jobs.step import Item, Step
from accord.tokenize.clips import read_clips
from accord.tokenize.codec import DacCodec
from accord.tokenize.config import TokenizeConfig
from accord.tokenize.meta import check_compatible, tokenize_meta
from accord.tokenize.sink import ShardSink
from accord.tokenize.speaker import SpeakerEncoder
from accord.tokenize.steps import CodecStep, SpeakerStep
from accord.tokenize.textnorm import normalization_info, prebuild

log = logging.getLogger(__name__)

STEPS = "accord.tokenize.steps"
DAC_POOL, SPEAKER_POOL = CodecStep.name, SpeakerStep.name


def tokenize_graph(cfg: TokenizeConfig) -> JobGraph:
    """Read in the shard's task, DAC and ECAPA in actor pools, one ``batch_size`` bundle per call."""
    step = {"config": cfg}
    return JobGraph(
        source=[
            StepSpec(f"{STEPS}:ShardClipsStep"),
            StepSpec(f"{STEPS}:ReadStep", kwargs=step),
            StepSpec(f"{STEPS}:TextNormStep", kwargs=step),
        ],
        pools=[
            PoolSpec(
                DAC_POOL,
                StepSpec(f"{STEPS}:CodecStep", kwargs=step),
                cfg.dac_actors,
                cfg.dac_num_cpus,
                cfg.dac_num_gpus,
                batch_size=1,
            ),
            PoolSpec(
                SPEAKER_POOL,
                StepSpec(f"{STEPS}:SpeakerStep", kwargs=step),
                cfg.speaker_actors,
                cfg.speaker_num_cpus,
                cfg.speaker_num_gpus,
                batch_size=1,
            ),
        ],
        bundle=cfg.batch_size,
        source_num_cpus=cfg.read_num_cpus,
    )


def check_weights(cfg: TokenizeConfig) -> list[str]:
    """Fail now, before hours of work that would end in a tokenize run, if its models would be
    refused (:class:`accord.core.weights.ModelNotFound` with the how-to); else the refs that will load
    random weights. Resolves references only; loads nothing."""
    chosen = [
        choose_weights(cfg.codec.ref, cfg.codec.allow_random),
        choose_weights(cfg.speaker.ref, cfg.speaker.allow_random),
    ]
    return sorted({w.ref for w in chosen if w.random})


@dataclass
class TokenizeResult:
    shards_uri: str
    run_id: str
    n_clips: int
    n_shards: int
    n_written: int  # shards written in this run
    n_skipped: int  # shards already done
    n_samples: int  # samples written in this run
    n_errors: int  # error rows written in this run
    seconds: float  # audio seconds written in this run
    wall_s: float
    index: pa.Table | None = None
    model_s: float = 0.0  # time inside the DAC and ECAPA forwards (summed over workers)


def run_tokenize(
    manifest_uri: str,
    shards_uri: str,
    min_stage: str | None = None,
    config: TokenizeConfig | None = None,
    address: str | None = None,
    thresholds: Any = None,
    reapply: bool | None = None,
    codec: DacCodec | None = None,
    encoder: SpeakerEncoder | None = None,
) -> TokenizeResult:
    """Tokenize every clip of ``manifest_uri`` eligible for ``min_stage`` into ``shards_uri``.

    ``min_stage``, ``thresholds`` and ``reapply`` override the config's ``min_stage``,
    ``eligibility`` and ``reapply`` when given.

    ``codec``/``encoder`` reuse already-loaded models (local executor only). Models without
    trained weights are refused (``ModelNotFound``) before anything under ``shards_uri`` is
    written or removed, unless the config opts in to random weights (``allow_random`` or a
    ``<kind>:random`` ref); ``tokenize.json`` and the index record such refs as ``random_weights``.

    One run writes ``shards_uri`` at a time: a second refuses with
    :class:`accord.core.lock.OutputBusyError` naming the first (a dead run's lock is taken over).
    """
    with OutputLock(shards_uri, "tokenize") as lock:
        return _tokenize(lock, manifest_uri, shards_uri, min_stage, config, address, thresholds, reapply,
                         codec, encoder)  # fmt: skip


def _tokenize(
    lock: OutputLock,
    manifest_uri: str,
    shards_uri: str,
    min_stage: str | None,
    config: TokenizeConfig | None,
    address: str | None,
    thresholds: Any,
    reapply: bool | None,
    codec: DacCodec | None,
    encoder: SpeakerEncoder | None,
) -> TokenizeResult:
    """:func:`run_tokenize`'s work; it takes ``lock`` just before its first write or removal."""
    t0, started_at = time.perf_counter(), time.time()
    cfg = config or TokenizeConfig()
    cfg = replace(
        cfg,
        min_stage=min_stage or cfg.min_stage,
        eligibility=cfg.eligibility if thresholds is None else thresholds,
        reapply=cfg.reapply if reapply is None else reapply,
    )
    min_stage, thresholds, reapply = cfg.min_stage, cfg.eligibility, cfg.reapply
    if cfg.executor not in ("ray", "local"):
        raise ValueError(f"unknown executor {cfg.executor!r}; expected 'ray' or 'local'")
    run_id = new_run_id()
    clips = read_clips(manifest_uri, min_stage, thresholds=thresholds, reapply=reapply)
    plan = plan_shards(clips, cfg.shards)
    pending = {i: ids for i, ids in enumerate(plan) if not is_done(shards_uri, i, ids)}
    log.info("%d clips in %d shards, %d to write", len(clips), len(plan), len(pending))

    meta: Item = {}
    if pending:
        # Model identity for tokenize.json: loaded here once (cheap next to encoding) so that
        # missing weights or a mismatch with existing shards fail before any write or removal
        # (the speaker first: it loads in a fraction of DAC's time). With Ray the actors hold
        # the models (maybe on GPUs); the driver loads CPU copies only for this.
        on_driver = cfg.executor == "ray"
        encoder = encoder or SpeakerEncoder.load(
            config=replace(cfg.speaker, device="cpu") if on_driver else cfg.speaker
        )
        codec = codec or DacCodec.load(config=replace(cfg.codec, device="cpu") if on_driver else cfg.codec)
        extra = {
            "min_stage": min_stage,
            "manifest_uri": manifest_uri,
            "run_id": run_id,
            "text_normalization": normalization_info(
                cfg.text_normalization, (c.get("language") for c in clips)
            ),
        }
        meta = tokenize_meta(cfg, codec, encoder, extra)
        check_compatible(shards_uri, meta)
        # the grammars compiled here, once per language, so that workers only load the cache
        prebuild(meta["text_normalization"]["normalized_languages"])

    lock.acquire(run_id)  # here, not earlier: a run refused above leaves SHARDS as it was
    Store(shards_uri).clean_temp("", SHARDS_DIR, PARTS_DIR, ERRORS_DIR, RUNS_DIR)  # dead runs' temp files
    stale = remove_stale(shards_uri, len(plan))
    if stale:
        log.warning("removed %d shards beyond the current plan of %d: %s", len(stale), len(plan), stale)

    sink = ShardSink(shards_uri, {shard_name(i): (i, ids) for i, ids in pending.items()},
                     meta.get(RANDOM_WEIGHTS_KEY, []), run_id)  # fmt: skip

    def finish(status: str, index: pa.Table | None = None) -> TokenizeResult:
        result = TokenizeResult(
            shards_uri, run_id, len(clips), len(plan), len(pending), len(plan) - len(pending),
            sink.n_samples, sink.n_errors, sink.seconds, time.perf_counter() - t0, index, sink.model_s,
        )  # fmt: skip
        fields = {
            k: getattr(result, k) for k in TokenizeResult.__dataclass_fields__ if k not in ("index", "run_id")
        }
        record = build_record(
            run_id, "tokenize", status=status, started_at=started_at, argv=sys.argv,
            manifest_uri=manifest_uri, min_stage=min_stage, config=asdict(cfg),
            step_seconds={k: round(v, 3) for k, v in sorted(sink.step_seconds.items())}, **fields,
        )  # fmt: skip
        write_run_record(shards_uri, record)
        return result

    if pending:
        by_id = {c["clip_id"]: c for c in clips}
        units = [
            Unit(shard_name(i), {"shard": i, "clips": [by_id[c] for c in ids]}) for i, ids in pending.items()
        ]
        prebuilt = None
        if cfg.executor == "local":
            prebuilt = {DAC_POOL: CodecStep(cfg, codec), SPEAKER_POOL: SpeakerStep(cfg, encoder)}
        del codec, encoder  # with Ray the actors load their own
        try:
            incomplete = _run(units, tokenize_graph(cfg), sink, cfg, address, prebuilt)
        except BaseException:
            sink.abort()
            finish("failed")
            raise
        if incomplete:
            finish("incomplete")
            raise RuntimeError(f"shards {incomplete} did not receive all their clips; a re-run redoes them")
    index, _ = write_index(shards_uri, len(plan))
    if pending:
        write_tokenize_json(shards_uri, {**meta, "n_shards": len(plan)})
    return finish("succeeded", index)


def _run(
    units: list[Unit],
    graph: JobGraph,
    sink: ShardSink,
    cfg: TokenizeConfig,
    address: str | None,
    prebuilt: dict[str, Step] | None,
) -> list[str]:
    """Run ``graph`` over ``units`` into ``sink`` on the configured executor; the incomplete units.
    ``prebuilt``: the local executor's model steps, by pool name (models already loaded)."""
    keys = [u.key for u in units]
    if cfg.executor == "local":
        for step in (prebuilt or {}).values():
            step.setup()
        return drive(iter_local(units, graph, prebuilt), keys, sink).incomplete
    started = init_ray(address, cfg.num_cpus)
    try:
        return drive(iter_ray(units, graph), keys, sink).incomplete
    finally:
        if started:
            import ray

            ray.shutdown()
