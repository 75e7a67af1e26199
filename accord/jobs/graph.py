"""A job's graph: source steps -> named actor pools -> post steps, and its Ray Data form.

Source steps run in one task per unit (``flat_map``: one unit in, its item bundles, error rows
and unit row out, streamed in blocks); each pool is a Ray actor pool whose actors build their
step once (models) and run it over ``batch_size`` rows per call; post steps run in a small
autoscaling actor pool (:data:`POST_CPUS_PER_ACTOR`) and drop arrays before the rows reach the
driver. :mod:`accord.jobs.local` runs the same graph
in-process with the same batching.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from accord.jobs.rows import Row, Unit, finish_rows, iter_unit, process_rows
from accord.jobs.spec import StepSpec
from accord.jobs.step import Step

log = logging.getLogger(__name__)

ROW_SCHEMA = pa.schema([("key", pa.string()), ("kind", pa.string()), ("payload", pa.large_binary())])


@dataclass(frozen=True)
class PoolSpec:
    """One actor pool: its step, how many actors, what each reserves, rows per call.

    ``name`` is the step name in error rows and timings (e.g. ``asr:moonshine``).
    ``batch_size``: rows per call; None = each block as it arrives (one unit's rows when the
    unit fits in a block). ``memory_mb``: what each actor asks Ray for, so Ray packs actors
    by memory too (None: no request). ``then``: pools fused into this one (:func:`fuse_pools`):
    each actor also runs their steps, in order, on every batch it was given.
    """

    name: str
    step: StepSpec
    concurrency: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int | None = None
    memory_mb: float | None = None
    then: tuple[PoolSpec, ...] = ()

    def stages(self) -> tuple[PoolSpec, ...]:
        """This pool's step and those fused after it, in run order (each names its errors)."""
        return (self, *self.then)


def fuse_pools(pools: list[PoolSpec], concurrency: int, num_cpus: float) -> PoolSpec:
    """One pool whose ``concurrency`` actors each run every step of ``pools`` in order, on the
    same batch: no hand-off between actors, no pool idle while another is the bottleneck, and
    the per-step batches are those of separate pools (the first pool's ``batch_size``). Each
    actor reserves ``num_cpus`` and the sum of the steps' ``memory_mb``."""
    if not pools:
        raise ValueError("fuse_pools needs at least one pool")
    first, *rest = pools
    mem = [p.memory_mb for p in pools]
    return replace(
        first,
        concurrency=concurrency,
        num_cpus=num_cpus,
        num_gpus=max(p.num_gpus for p in pools),
        memory_mb=None if any(m is None for m in mem) else float(sum(mem)),  # type: ignore[arg-type]
        then=tuple(replace(p, then=()) for p in rest),
    )


@dataclass(frozen=True)
class JobGraph:
    """The steps of a job and how Ray sizes and retries them (recorded in run records)."""

    source: list[StepSpec]
    pools: list[PoolSpec] = field(default_factory=list)
    post: list[StepSpec] = field(default_factory=list)
    bundle: int = 1  # items per row out of the source steps (one pool call's batch with batch_size=1)
    summary_keys: tuple[str, ...] = ()  # item keys the unit row reports (see iter_unit)
    source_num_cpus: float = 0.5
    post_num_cpus: float = 0.25
    # Retries when a worker process dies (segfault, OOM kill) on a block. Ray Data's default is
    # to retry forever, so one poison input would hang the job; after these many the block is
    # dropped, its units are reported incomplete and the job goes on.
    task_max_retries: int = 2
    actor_max_task_retries: int = 2
    block_mb: float | None = None  # Ray Data's target block size in MiB (None: Ray's default)
    progress: bool = False
    post_max_actors: int = 1  # the post pool grows to this many actors (iter_ray: by cluster CPUs)
    # The post steps run in the last pool's actors, after its steps, and there is no post pool:
    # for a fused pool (every actor runs every step), which saves the post actor's start-up, a
    # Ray Data operator and a hand-off of every clip's audio between processes (issue #28).
    post_in_pool: bool = False

    def post_pool(self) -> bool:
        """Whether the post steps get a pool of their own (the last pool does not run them)."""
        return bool(self.post) and not (self.post_in_pool and self.pools)


MIN_POOL_CPUS = 0.05  # the smallest reservation fit_to_cpus gives an actor


def fit_to_cpus(graph: JobGraph, cpus: float) -> JobGraph:
    """``graph`` with its actor pools' CPU reservations scaled down, in proportion, so that every
    actor, one source task and the first post actor fit in ``cpus`` together.

    Ray starts an actor only when its reservation is free, and a pool without its actor stalls
    the whole dataset: five model pools at 0.5 CPU each never start on a 2-CPU machine (the
    ingest hung there with four of them up). Reservations are bookkeeping, not limits: the
    actors still use what the cores give them. Larger clusters keep the configured values.
    """
    need = sum(p.num_cpus * p.concurrency for p in graph.pools)
    room = cpus - graph.source_num_cpus - (graph.post_num_cpus if graph.post_pool() else 0.0)
    if need <= room or need <= 0 or cpus <= 0:  # no CPUs yet: an autoscaler will add nodes
        return graph
    factor = max(room, 0.0) / need
    pools = [replace(p, num_cpus=max(MIN_POOL_CPUS, round(p.num_cpus * factor, 3))) for p in graph.pools]
    log.info("actor pools reserve %.2f CPUs, the cluster has %.2f: scaled by %.2f to fit", need, cpus, factor)
    return replace(graph, pools=pools)


MEMORY_ROOM = 0.8  # share of the cluster's Ray memory the actors' requests may take together


def fit_to_memory(graph: JobGraph, memory_mb: float) -> JobGraph:
    """``graph`` with its actors' memory requests scaled down, in proportion, to fit in
    ``MEMORY_ROOM`` of ``memory_mb``: like CPUs, a request the cluster cannot grant leaves its
    pool without an actor and the dataset stalls. 0 (unknown) keeps them."""
    need = sum((p.memory_mb or 0.0) * p.concurrency for p in graph.pools)
    room = MEMORY_ROOM * memory_mb
    if need <= room or memory_mb <= 0:
        return graph
    factor = room / need
    pools = [p if p.memory_mb is None else replace(p, memory_mb=p.memory_mb * factor) for p in graph.pools]
    log.info("actor pools ask %.0f MiB, the cluster has %.0f: scaled by %.2f to fit", need, memory_mb, factor)
    return replace(graph, pools=pools)


# Steps built in this worker process, by their specs (Ray reuses worker processes for tasks).
_BUILT: dict[str, list[Step]] = {}


def built_steps(specs: list[StepSpec]) -> list[Step]:
    k = repr(specs)
    if k not in _BUILT:
        _BUILT[k] = [s.build() for s in specs]
    return _BUILT[k]


def _table(rows: list[Row]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)


def source_fn(row: dict[str, Any], graph: JobGraph) -> Iterator[Row]:
    """flat_map: one unit -> its rows, lazily: Ray Data cuts them into blocks of
    ``target_max_block_size`` as they come, so a long unit is never all in the worker at once."""
    unit = Unit(row["key"], pickle.loads(row["payload"]))
    yield from iter_unit(built_steps(graph.source), unit, graph.bundle, graph.summary_keys)


def post_rows(rows: list[Row], specs: list[StepSpec]) -> list[Row]:
    """The post steps over a batch's rows (built once per process), in a post actor or after the
    last pool's steps (``JobGraph.post_in_pool``)."""
    for step in built_steps(specs):
        rows = process_rows(step, rows, batched=True)
    return rows


def post_fn(batch: pa.Table, specs: list[StepSpec]) -> pa.Table:
    return _table(finish_rows(post_rows(batch.to_pylist(), specs)))


# Post steps run in actors, not tasks: with the model actors up, Ray's worker pool is over its
# soft limit (one worker per CPU), so it kills a task's worker one second after the task ends and
# starts a new process (Ray, pyarrow, accord's imports: ~3 core-s) for the next block. On 2
# cores that was 11 post workers in one bench ingest, ~35 of its ~200 core-s (issue #28). The
# pool grows by one actor per this many cluster CPUs (post costs ~2 % of the models' CPU).
POST_CPUS_PER_ACTOR = 8


def post_actors(cpus: float) -> int:
    """Most actors the post pool grows to on a cluster of ``cpus`` CPUs (at least one)."""
    return max(1, int(cpus // POST_CPUS_PER_ACTOR))


def post_class(specs: list[StepSpec]) -> type:
    """An actor class running :func:`post_fn` with ``specs`` built in (no constructor
    arguments in the object store), its steps built once per actor."""

    class PostSteps:
        def __call__(self, batch: pa.Table) -> pa.Table:
            return post_fn(batch, specs)

    return PostSteps


class PoolActor:
    """One pool's steps (its own and those fused after it), built once per actor; runs them in
    order over a batch of rows in one call, then the ``post`` steps (:func:`post_rows`)."""

    def __init__(self, pool: PoolSpec, finish: bool, post: list[StepSpec] | None = None) -> None:
        self.pool, self.finish, self.post = pool, finish, post or []
        self.stages = [(p.name, p.step.build()) for p in pool.stages()]
        built_steps(self.post)  # built with the models, not on the first batch

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        for name, step in self.stages:
            rows = process_rows(step, rows, batched=True, name=name)
        rows = post_rows(rows, self.post)
        return _table(finish_rows(rows) if self.finish else rows)


def actor_class(pool: PoolSpec, finish: bool = False, post: list[StepSpec] | None = None) -> type:
    """A ``PoolActor`` subclass with its spec built in: no constructor arguments in the object
    store (Ray warns about those for restartable actors), and a readable operator name.
    ``post``: the post steps, run after the pool's (``JobGraph.post_in_pool``)."""

    class _Pool(PoolActor):
        def __init__(self) -> None:
            super().__init__(pool, finish, post)

    label = "__".join(p.name for p in pool.stages())  # a fused pool names every step it runs
    _Pool.__name__ = _Pool.__qualname__ = "Pool_" + "".join(c if c.isalnum() else "_" for c in label)
    return _Pool


def configure_data_context(graph: JobGraph) -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = graph.progress
    ctx.enable_operator_progress_bars = graph.progress
    # A block that fails outright (worker died, OOM) must not end the job: its units are
    # reported incomplete, left without a completion marker, and retried by the next run.
    ctx.max_errored_blocks = -1
    if graph.block_mb is not None:
        ctx.target_max_block_size = int(graph.block_mb * 2**20)


def build_dataset(units: list[Unit], graph: JobGraph):
    """The lazy Ray Dataset of result rows for ``units`` (executed by iterating it)."""
    import ray
    from ray.data import ActorPoolStrategy

    configure_data_context(graph)
    items = [{"key": u.key, "payload": pickle.dumps(u.item, protocol=pickle.HIGHEST_PROTOCOL)} for u in units]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    ds = ds.flat_map(
        source_fn,
        fn_kwargs={"graph": graph},
        num_cpus=graph.source_num_cpus,
        max_retries=graph.task_max_retries,
    )
    in_pool = not graph.post_pool()  # the last pool runs the post steps (if any) and finishes rows
    for i, pool in enumerate(graph.pools):
        last = i == len(graph.pools) - 1 and in_pool
        ds = ds.map_batches(
            actor_class(pool, finish=last, post=graph.post if last else None),
            batch_size=pool.batch_size,
            batch_format="pyarrow",
            compute=ActorPoolStrategy(size=pool.concurrency),
            num_cpus=pool.num_cpus,
            num_gpus=pool.num_gpus or None,
            max_task_retries=graph.actor_max_task_retries,
            **({"memory": int(pool.memory_mb * 2**20)} if pool.memory_mb else {}),
        )
    if graph.post_pool() or not graph.pools:
        # batch_size=None: each block as it arrives, so finished units reach the driver promptly.
        ds = ds.map_batches(
            post_class(graph.post),
            batch_size=None,
            batch_format="pyarrow",
            compute=ActorPoolStrategy(min_size=1, max_size=max(1, graph.post_max_actors)),
            num_cpus=graph.post_num_cpus,
            max_task_retries=graph.actor_max_task_retries,
        )
    return ds


def iter_ray(units: list[Unit], graph: JobGraph) -> Iterator[list[Row]]:
    """Result rows of ``units`` on the connected Ray cluster, one list per block as it arrives
    (actor reservations fitted to the cluster's CPUs and memory: :func:`fit_to_cpus`,
    :func:`fit_to_memory`)."""
    import ray

    resources = ray.cluster_resources()
    graph = fit_to_cpus(graph, float(resources.get("CPU", 0.0)))
    graph = fit_to_memory(graph, float(resources.get("memory", 0.0)) / 2**20)
    graph = replace(graph, post_max_actors=post_actors(float(resources.get("CPU", 0.0))))
    batches = iter(build_dataset(units, graph).iter_batches(batch_format="pyarrow", batch_size=None))
    try:
        for batch in batches:
            yield batch.to_pylist()
    finally:
        # Closing this generator (drive does, on any exit) stops Ray Data's executor now, while
        # Ray is still up: left to the garbage collector, it hung at exit after ray.shutdown().
        close = getattr(batches, "close", None)
        if close is not None:
            close()
