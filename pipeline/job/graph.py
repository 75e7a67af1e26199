"""The Ray Data graph of an ingest: sources -> decode+VAD tasks -> ASR actor pools -> post tasks.

Rows between stages are ``{key, kind, payload}`` (see :mod:`accord.pipeline.job.execute`).
Steps are built once per worker process (tasks) or per actor and reused across batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from accord.pipeline.io.listing import Source
from accord.pipeline.job.config import IngestConfig, StepSpec
from accord.pipeline.job.execute import finish_rows, iter_source, process_rows
from accord.pipeline.job.plan import Plan
from accord.pipeline.steps.base import Step

ROW_SCHEMA = pa.schema([("key", pa.string()), ("kind", pa.string()), ("payload", pa.large_binary())])

# Steps built in this worker process, by their specs (Ray reuses worker processes for tasks).
_BUILT: dict[str, list[Step]] = {}


def _steps(specs: list[StepSpec]) -> list[Step]:
    k = repr(specs)
    if k not in _BUILT:
        _BUILT[k] = [s.build() for s in specs]
    return _BUILT[k]


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)


def source_fn(row: dict[str, Any], specs: list[StepSpec]) -> Iterator[dict[str, Any]]:
    """flat_map: one source -> its clip rows, error rows and one source row, lazily: Ray Data
    cuts the rows into blocks of ``target_max_block_size`` as they come, so a long source's
    clip audio is never all in the worker at once."""
    src = {k: row[k] for k in ("uri", "size", "fingerprint", "key")}
    yield from iter_source(_steps(specs), src)


def post_fn(batch: pa.Table, specs: list[StepSpec]) -> pa.Table:
    """map_batches task: agreement, features, eligibility; then drop audio from the payloads."""
    rows = batch.to_pylist()
    for step in _steps(specs):
        rows = process_rows(step, rows, batched=True)
    return _table(finish_rows(rows))


class AsrActor:
    """One ASR pool's systems, loaded once per actor; transcribes a batch of clips in one call."""

    def __init__(self, spec: StepSpec, name: str) -> None:
        self.step = spec.build()
        self.name = name

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _table(process_rows(self.step, batch.to_pylist(), batched=True, name=self.name))


def actor_class(spec: StepSpec, name: str) -> type:
    """An ``AsrActor`` subclass with its spec built in: no constructor arguments in the object
    store (Ray warns about those for restartable actors), and a readable operator name."""

    class _Pool(AsrActor):
        def __init__(self) -> None:
            super().__init__(spec, name)

    _Pool.__name__ = _Pool.__qualname__ = "Asr_" + "".join(c if c.isalnum() else "_" for c in name[4:])
    return _Pool


def configure_data_context(cfg: IngestConfig) -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = cfg.progress
    ctx.enable_operator_progress_bars = cfg.progress
    # A block that fails outright (worker died, OOM) must not end the job: its sources are
    # reported as incomplete, left without a completion marker, and retried by the next run.
    ctx.max_errored_blocks = -1
    if cfg.block_mb is not None:
        ctx.target_max_block_size = int(cfg.block_mb * 2**20)


def build_dataset(sources: list[Source], plan: Plan, cfg: IngestConfig):
    """The lazy Ray Dataset of result rows for ``sources`` (executed by iterating it)."""
    import ray
    from ray.data import ActorPoolStrategy

    configure_data_context(cfg)
    items = [s.to_dict() for s in sources]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    ds = ds.flat_map(
        source_fn,
        fn_kwargs={"specs": plan.source},
        num_cpus=cfg.source_num_cpus,
        max_retries=cfg.task_max_retries,
    )
    for name, spec in plan.asr.items():
        ds = ds.map_batches(
            actor_class(spec, f"asr:{name}"),
            batch_size=cfg.asr_batch_size,
            batch_format="pyarrow",
            compute=ActorPoolStrategy(size=cfg.asr_concurrency),
            num_cpus=cfg.asr_num_cpus,
            num_gpus=cfg.asr_num_gpus or None,
            max_task_retries=cfg.actor_max_task_retries,
        )
    # batch_size=None: each block as it arrives, so finished sources reach the driver promptly.
    ds = ds.map_batches(
        post_fn,
        fn_kwargs={"specs": plan.post},
        batch_size=None,
        batch_format="pyarrow",
        num_cpus=cfg.post_num_cpus,
        max_retries=cfg.task_max_retries,
    )
    return ds
