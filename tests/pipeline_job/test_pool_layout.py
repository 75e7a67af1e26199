"""Issue #28: the ingest's model steps fused in one actor per CPU, or one pool per model; every
actor asks Ray for memory, fitted to the cluster like its CPUs."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import pyarrow as pa
import pytest

from accord.core.errors import ConfigError
from accord.jobs.graph import MEMORY_ROOM, JobGraph, PoolSpec, actor_class, fit_to_memory, fuse_pools
from accord.jobs.local import iter_local
from accord.jobs.rows import TIMINGS, Unit, pack, unpack
from accord.jobs.spec import StepSpec
from accord.jobs.step import Step
from accord.pipeline.job.config import IngestConfig
from accord.pipeline.job.plan import WORKER_MB, build_graph, build_plan, model_memory_mb


class Units(Step):
    name = "units"

    def process(self, item):
        return [{"source_uri": item["source_uri"], "clip_id": f"c{i}", "x": i} for i in range(item["n"])]


class AddOne(Step):
    name = "add"

    def process(self, item):
        return [{**item, "x": item["x"] + 1, "calls": item.get("calls", 0) + 1}]

    def process_batch(self, items):
        return [{**it, "x": it["x"] + 1, "calls": it.get("calls", 0) + 1, "seen": len(items)} for it in items]


class Double(Step):
    name = "double"

    def process(self, item):
        return [{**item, "x": 2 * item["x"]}]


POOLS = [
    PoolSpec("add", StepSpec(AddOne), num_cpus=0.5, memory_mb=100.0),
    PoolSpec("double", StepSpec(Double), num_cpus=0.5, memory_mb=50.0),
]
UNITS = [Unit("a", {"source_uri": "a", "n": 3}), Unit("b", {"source_uri": "b", "n": 2})]


def _items(graph: JobGraph) -> list[dict]:
    rows = [r for block in iter_local(UNITS, graph) for r in block if r["kind"] == "item"]
    items = [{k: v for k, v in it.items() if k != TIMINGS} for r in rows for it, _ in unpack(r)]
    return sorted(items, key=lambda it: (it["source_uri"], it["clip_id"]))


def test_fused_pools_give_the_rows_separate_pools_give() -> None:
    separate = JobGraph(source=[StepSpec(Units)], pools=POOLS)
    fused = replace(separate, pools=[fuse_pools(POOLS, concurrency=2, num_cpus=1.0)])
    assert [p.name for p in fused.pools[0].stages()] == ["add", "double"]
    assert fused.pools[0].memory_mb == 150.0 and fused.pools[0].concurrency == 2
    a, b = _items(separate), _items(fused)
    assert a == b and [it["x"] for it in a] == [2, 4, 6, 2, 4]
    assert all(it["seen"] == (3 if it["source_uri"] == "a" else 2) for it in b)  # one unit per call


def test_a_fused_actor_runs_every_step_on_its_batch() -> None:
    actor = actor_class(fuse_pools(POOLS, concurrency=1, num_cpus=1.0), finish=True)()
    batch = pa.Table.from_pylist(
        [pack("a", "item", [({"clip_id": f"c{i}", "x": i}, Fraction(1))]) for i in range(3)]
    )
    out = [it for r in actor(batch).to_pylist() for it, _ in unpack(r)]
    assert [it["x"] for it in out] == [2, 4, 6] and all(it["seen"] == 3 for it in out)


def test_memory_requests_fit_the_cluster() -> None:
    graph = JobGraph(source=[], pools=[replace(p, concurrency=2) for p in POOLS])
    assert fit_to_memory(graph, 10_000.0) == graph
    small = fit_to_memory(graph, 300.0)  # asks 300 MiB, may take 0.8 of 300
    assert sum(p.memory_mb * p.concurrency for p in small.pools) == pytest.approx(240.0)


def test_ingest_layouts() -> None:
    cfg = IngestConfig(num_cpus=2)
    plan = build_plan(cfg)
    per = build_graph(plan, replace(cfg, pool_layout="per-model"))  # one pool per model
    names = [p.name for p in per.pools]
    assert names == ["speaker_consistency", "lid", "asr:faster-whisper", "asr:moonshine", "dnsmos"]
    assert all(p.memory_mb == WORKER_MB + model_memory_mb(p.name, cfg) for p in per.pools)
    fused_cfg = replace(cfg, pool_layout="fused")
    fused = build_graph(plan, fused_cfg, cpus=16.0)  # one actor per CPU
    (pool,) = fused.pools
    assert [p.name for p in pool.stages()] == names and pool.concurrency == 16
    assert pool.memory_mb == WORKER_MB + sum(model_memory_mb(n, cfg) for n in names)
    assert build_graph(plan, fused_cfg).pools[0].concurrency == 2  # no cluster yet: the configured CPUs
    gpu = replace(fused_cfg, asr_num_gpus=1.0)
    assert [p.name for p in build_graph(plan, gpu, cpus=16.0).pools] == names  # GPUs: one pool each
    with pytest.raises(ConfigError, match="pool_layout"):
        IngestConfig(pool_layout="one-big").validate()


def test_auto_layout_fuses_where_memory_holds_an_actor_per_core() -> None:
    """The default (auto): fused when the cluster's memory holds one fused actor (every model,
    ~3 GiB) per CPU, or at least as many as the per-model pools keep busy; per-model on GPUs
    and where memory holds too few."""
    cfg = IngestConfig(num_cpus=2)
    assert cfg.pool_layout == "auto"
    plan = build_plan(cfg)
    names = ["speaker_consistency", "lid", "asr:faster-whisper", "asr:moonshine", "dnsmos"]
    fused_mb = WORKER_MB + sum(model_memory_mb(n, cfg) for n in names)

    def layout(cpus: float, memory_mb: float | None, c: IngestConfig = cfg) -> tuple[list[str], int]:
        g = build_graph(plan, c, cpus=cpus, memory_mb=memory_mb)
        return [p.name for p in g.pools], g.pools[0].concurrency

    assert layout(2.0, 16_000.0) == (["speaker_consistency"], 2)  # this machine: one per core
    assert layout(2.0, None) == (["speaker_consistency"], 2)  # memory unknown: one per core
    # 16 CPUs, memory for 6 fused actors: more than the 5 per-model actors keep busy
    assert layout(16.0, 6.5 * fused_mb / MEMORY_ROOM) == (["speaker_consistency"], 6)
    # memory for 3: fewer than the 5 per-model actors
    assert layout(16.0, 3.5 * fused_mb / MEMORY_ROOM) == (names, 1)
    assert layout(2.0, 1.5 * fused_mb / MEMORY_ROOM) == (names, 1)  # one fused actor on 2 cores
    gpu = replace(cfg, asr_num_gpus=1.0)
    assert layout(16.0, 1e6, gpu)[0] == names  # GPUs: one pool each
    explicit = replace(cfg, pool_layout="fused")  # asked for: one per CPU, requests fitted later
    assert layout(16.0, 3.5 * fused_mb / MEMORY_ROOM, explicit) == (["speaker_consistency"], 16)
